"""Registry, presets and the shipped ImageNet-100 class list."""

import hashlib
from pathlib import Path

import pytest

import study.data
from study.config import ProxySpec
from study.data import (
    ProxyData,
    ProxySource,
    get_source,
    imagenet100_classes,
    list_proxies,
    list_sources,
    load_proxy,
    make_synthetic,
    proxy_preset,
    register_source,
)
from study.data._classes import IMAGENET100_SHA256
from study.data._registry import _SOURCES


def test_shipped_class_list_matches_its_checksum():
    # only the shipped file and the checksum in the code: a plain clone has nothing beside it
    shipped = Path(study.data.__file__).with_name("imagenet100.txt").read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == IMAGENET100_SHA256
    wnids = imagenet100_classes()
    assert len(wnids) == 100 == len(set(wnids)) and wnids == sorted(wnids)
    assert wnids[0] == min(shipped.decode().split())


def test_registry_lists_and_rejects():
    assert list_sources() == ["imagefolder", "imagenet-downsampled", "imagenet100", "synthetic"]
    assert list_sources(generated=False) == ["imagefolder", "imagenet-downsampled", "imagenet100"]
    with pytest.raises(ValueError, match="unknown proxy source 'imagenet'.*imagefolder.*synthetic.*'cache'"):
        get_source("imagenet")
    with pytest.raises(ValueError, match="unknown proxy source"):
        load_proxy(ProxySpec(source="imagenet"))
    with pytest.raises(ValueError, match="python -m study.data prepare --source imagefolder"):
        load_proxy(ProxySpec(source="imagefolder", data="/somewhere"))
    with pytest.raises(ValueError, match="needs data=DIR"):
        load_proxy(ProxySpec(source="cache"))


def test_register_a_source():
    @register_source("test-two-class")
    class TwoClass(ProxySource):
        generated = True

        def load(self, proxy):
            return make_synthetic(num_classes=2, resolution=proxy.resolution, train_per_class=2, val_per_class=1)

    try:
        assert "test-two-class" in list_sources(generated=True)
        d = load_proxy(ProxySpec(source="test-two-class", resolution=8))
        assert isinstance(d, ProxyData) and d.num_classes == 2
        with pytest.raises(ValueError, match="already registered"):
            register_source("test-two-class")(type("Other", (ProxySource,), {}))
    finally:
        _SOURCES.pop("test-two-class", None)


def test_presets(monkeypatch):
    assert {"synthetic", "in100-32", "in100-64"} <= set(list_proxies())
    assert proxy_preset("synthetic") == ProxySpec()
    monkeypatch.setenv("STUDY_CACHE_DIR", "/data/caches")
    p = proxy_preset("in100-64", images_per_class=50)
    assert p.source == "cache" and p.resolution == 64 and p.images_per_class == 50 and p.data == "/data/caches/in100-64"
    with pytest.raises(ValueError, match="unknown proxy preset 'in100'.*in100-32"):
        proxy_preset("in100")
    with pytest.raises(FileNotFoundError, match="no such cache folder.*prepare"):
        load_proxy(proxy_preset("in100-32"))
    small = load_proxy(proxy_preset("synthetic-small"))
    assert small.num_classes == 10 and small.resolution == 16 and len(small.train) == 200
