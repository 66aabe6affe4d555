"""Export chosen trials as full-training TrialConfig JSON for ``python -m study.train``.

::

    python -m analysis.export runs/NAME --top 5 [--recipe eca-imagenet] [--num-classes 100]
    python -m analysis.export runs/NAME --pareto [params|macs|latency]
    python -m analysis.export runs/NAME --format deepcave [--out DIR]

Each selected trial keeps its architecture (backbone, width, every stage's attention kind
and parameters, so ECA's k resolves as in the trial) and gets a full-training setting:
the recipe preset, the ImageNet stem (a proxy's "lowres" stem at 224 px would cost ~50x
the MACs; ``--keep-stem`` keeps it), ``--num-classes`` (default 100, ImageNet-100) and a
224 px proxy that reads a prepared cache (``--data``, default ``caches/in100-224``; make it
with ``python -m study.data prepare --source imagenet100 --root IMAGENET --res 224 --out
caches/in100-224``) with random-resized-crop augmentation. Files go to
``runs/NAME/export/`` (``--out``) with ``index.json`` and ``index.csv`` naming each file
with the proxy result that selected it.

Recipes (:data:`RECIPES`):

- ``eca-imagenet``: the ECA paper's ImageNet schedule (Wang et al., CVPR 2020, Sec. 4.1,
  following He et al. 2016): 100 epochs, SGD momentum 0.9 (no Nesterov), lr 0.1 for batch
  256, weight decay 1e-4, lr x0.1 every 30 epochs, no warm-up, no label smoothing;
- ``in100-cosine``: a cosine ImageNet-100 schedule after "Bag of Tricks" (He et al., CVPR
  2019): 120 epochs, batch 256, lr 0.1, Nesterov, weight decay 1e-4, 5 warm-up epochs,
  cosine decay, label smoothing 0.1.

``--format deepcave`` writes every finished trial of the study as a DeepCAVE run (its Pandas
DataFrame format: ``configspace.csv`` and ``trials.csv``, into ``runs/NAME/deepcave/`` unless
``--out``); what that format cannot say about a conditional space, and what is written
instead, is in :mod:`analysis._deepcave`.
"""

from analysis._export import *  # noqa: F403  (the public API of this module)
from analysis._export import __all__  # noqa: F401

if __name__ == "__main__":
    from analysis._export import main
    from study.cli import run_cli

    run_cli(main, prog="python -m analysis.export")
