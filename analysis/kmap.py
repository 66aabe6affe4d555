"""Which ECA kernel size k does a search prefer for C channels, and does psi(C) describe it?

ECA-Net (Wang et al., "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020, Sec. 3.2.3, eq. 12) maps the channel count C to the 1-D kernel size
k = psi(C) = |log2(C)/gamma + b/gamma|_odd with gamma=2, b=1, after rejecting a linear
mapping C = gamma*k - b. This module

1. estimates the preferred k* per observed C from a study's ECA trials
   (:func:`preferred_k`): a scikit-learn surrogate of top-1 over the per-stage choices,
   read off as the odd k that maximizes the partial dependence of predicted top-1 on that
   stage's k, averaged over the trials whose stage has C channels; a bootstrap over trials
   gives a distribution of k*. Pruned trials count with the best top-1 they reached
   (weighted by ``pruned_weight``, default 1) and the number of epochs they ran is a
   surrogate feature, the partial dependence being read at the full epoch budget; failed
   trials are left out;
2. fits mappings to (C, k*) points (:func:`fit_kmap`): (a) psi with (gamma, b) fitted by
   grid search for both rounding rules of :func:`study.attention.psi` ("paper" and "timm",
   which floors k at 3), reporting the whole set of (gamma, b) with equal loss;
   (b) the continuous k ~ alpha*log2(C) + beta (gamma = 1/alpha, b = beta/alpha) with
   bootstrap confidence intervals; (c) the linear k ~ a*C + c the paper rejected. Every fit
   reports its loss and the paper's own (gamma=2, b=1) loss on the same points;
3. summarizes trials that sampled (gamma, b) directly (:func:`gamma_b_plane`).

Command line: ``python -m analysis.kmap --points FILE.csv [--json]`` fits points given
directly (columns C, k and optionally weight); ``python -m analysis.kmap runs/NAME`` does
steps 1-2 for a study.
"""

from analysis._kmap import *  # noqa: F401,F403  (the public API of this module)
from analysis._kmap import __all__  # noqa: F401

if __name__ == "__main__":
    from study._cli import run_cli

    from analysis._kmap import main

    run_cli(main, prog="python -m analysis.kmap")
