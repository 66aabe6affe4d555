"""Running on a Ray cluster: connecting, proxy data that reaches every node, data-parallel
full training on Ray Train, and many exported configs trained as one job.

- :func:`init_ray` / :func:`check_reachable`: connect to ``--address`` (failing fast when
  nothing answers, or when the cluster refuses this process's token:
  :func:`check_cluster_token`) or start a local Ray with a token made for it
  (:func:`local_cluster_auth`; Ray's token authentication, see :mod:`study.cluster._auth`).
- :func:`check_cache_on_nodes` / :func:`stage_cache` / :func:`prepare_cache`: every node
  that runs a trial or a worker reads the proxy cache at the same path (checked, naming the
  nodes that cannot), or gets its own copy shipped through Ray's object store.
- :func:`train_distributed` (:class:`Scaling`): ``study.trainer.train`` in every worker of
  Ray Train's ``TorchTrainer`` (DDP; gloo on CPU, NCCL on GPU), checkpoints by rank 0 into
  the output folder through a recorder actor on the driver's node, restarts by Ray Train.
- :func:`read_index` / :func:`train_batch`: every config of an export ``index.json``, as
  many at once as the cluster holds, each into its own folder, with a closing table.

The core package imports Ray only here (and lazily: importing :mod:`study.cluster` does not
start or import Ray).
"""

from study.cluster._auth import check_cluster_token, local_cluster_auth, token_source
from study.cluster._batch import BatchEntry, EntryOutcome, batch_status, finished_run, format_table, read_index, train_batch
from study.cluster._connect import check_reachable, init_ray
from study.cluster._launch import (
    Scaling,
    TrainingFailed,
    absolute_data,
    check_resources,
    prepare_data,
    scale_recipe,
    train_distributed,
)
from study.cluster._nodes import Node, check_cache_on_nodes, cluster_nodes, nodes_for, prepare_cache, stage_cache
from study.cluster._recorder import NAMESPACE, Recorder, recorder_name

__all__ = [
    "init_ray",
    "check_reachable",
    "check_cluster_token",
    "local_cluster_auth",
    "token_source",
    "Node",
    "cluster_nodes",
    "nodes_for",
    "check_cache_on_nodes",
    "stage_cache",
    "prepare_cache",
    "Scaling",
    "TrainingFailed",
    "check_resources",
    "prepare_data",
    "scale_recipe",
    "train_distributed",
    "absolute_data",
    "Recorder",
    "recorder_name",
    "NAMESPACE",
    "BatchEntry",
    "EntryOutcome",
    "finished_run",
    "format_table",
    "read_index",
    "train_batch",
    "batch_status",
]
