"""Downstream tasks and the upstream pretraining data.

* :mod:`.task`: the :class:`Task` container and transforms (:func:`subset_task`, :func:`relabel_task`);
* :mod:`.registry`: :func:`register_task`, :func:`list_tasks`, :func:`task_info`, :func:`create_task`,
  :func:`check_task_ref`, :func:`is_task_ref`;
* :mod:`.user` (with :mod:`.refs`, :mod:`.folder`, :mod:`.npz`): your own data as ``folder:PATH``
  (ImageFolder layout) or ``npz:PATH`` (arrays); :mod:`.uploads`: zip/npz uploads for the dashboard;
* :mod:`.fashion_mnist`: finding and reading Fashion-MNIST (bundled subset, Debian, local copies);
* :mod:`.builtin`: the offline tasks (Fashion-MNIST on held-out images, procedural tasks);
* :mod:`.online`: tasks that download through torchvision (MNIST, CIFAR, SVHN);
* :mod:`.generators`, :mod:`.idx`, :mod:`.cifar` (with the verified disk cache :mod:`.task_cache`):
  renderers and file readers (no pickle anywhere).

Images are float32 in [0, 1] in the dataset's native pixel space: eps is measured there, and
any resizing or normalisation belongs inside the backbone.
"""

from ..errors import TaskUnavailableError
from . import builtin as _builtin  # noqa: F401  (registers the offline tasks)
from . import online as _online  # noqa: F401  (registers the online tasks)
from .cifar import CIFARFormatError, read_cifar_bin, read_label_names, write_cifar_bin
from .fashion_mnist import FASHION_MNIST_CLASSES, HELDOUT_START, UPSTREAM_CLASSES, load_upstream
from .idx import IDXFormatError, read_idx, write_idx
from .refs import FOLDER_PREFIX, NPZ_PREFIX, TaskDataError, user_ref_of_path
from .registry import (
    DOMAINS,
    MIXED_SIZES,
    TaskSpec,
    check_task_ref,
    clear_task_cache,
    create_task,
    is_task_ref,
    list_tasks,
    register_task,
    task_display_name,
    task_info,
    task_test_size,
)
from .task import Task, relabel_task, subset_task
from .uploads import TaskUploadError, prune_task_uploads, store_task_upload, task_upload_dir, touch_task_upload, \
    unpack_task_upload

__all__ = [
    "DOMAINS", "FASHION_MNIST_CLASSES", "FOLDER_PREFIX", "HELDOUT_START", "MIXED_SIZES", "NPZ_PREFIX",
    "UPSTREAM_CLASSES", "CIFARFormatError", "IDXFormatError", "Task", "TaskDataError", "TaskSpec",
    "TaskUnavailableError", "TaskUploadError", "check_task_ref", "clear_task_cache", "create_task", "is_task_ref",
    "list_tasks", "load_upstream", "prune_task_uploads", "read_cifar_bin", "read_idx", "read_label_names",
    "register_task", "relabel_task", "store_task_upload", "subset_task", "task_display_name", "task_info",
    "task_test_size", "task_upload_dir", "touch_task_upload", "unpack_task_upload", "user_ref_of_path",
    "write_cifar_bin", "write_idx",
]
