"""Downstream tasks and the upstream pretraining data.

* :mod:`.task`: the :class:`Task` container and transforms (:func:`subset_task`, :func:`relabel_task`);
* :mod:`.registry`: :func:`register_task`, :func:`list_tasks`, :func:`task_info`, :func:`load_task`;
* :mod:`.fashion_mnist`: finding and reading Fashion-MNIST (bundled subset, Debian, local copies);
* :mod:`.builtin`: the offline tasks (Fashion-MNIST on held-out images, procedural tasks);
* :mod:`.online`: tasks that download through torchvision (MNIST, CIFAR, SVHN);
* :mod:`.generators` (with its verified disk cache :mod:`.task_cache`), :mod:`.idx`, :mod:`.cifar`:
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
from .registry import DOMAINS, TaskSpec, clear_task_cache, list_tasks, load_task, register_task, task_info
from .task import Task, relabel_task, subset_task

__all__ = [
    "DOMAINS", "FASHION_MNIST_CLASSES", "HELDOUT_START", "UPSTREAM_CLASSES", "CIFARFormatError", "IDXFormatError",
    "Task", "TaskSpec", "TaskUnavailableError", "clear_task_cache", "list_tasks", "load_task", "load_upstream",
    "read_cifar_bin", "read_idx", "read_label_names", "register_task", "relabel_task", "subset_task", "task_info",
    "write_cifar_bin", "write_idx",
]
