"""Requirement names, installed closures, accelerator builds and the cached module owners."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from tiffin.env import pins
from tiffin.env.pins import accelerator_of, installed_pins, requirement_name, top_level_owners


def fake_dist(
    site: Path, name: str, version: str, requires: tuple[str, ...] = (), top: str | None = None
) -> None:
    """An installed distribution as importlib.metadata sees it: a dist-info in ``site``."""
    norm = name.replace("-", "_")
    info = site / f"{norm}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    record = [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    if top is not None:
        (site / top).mkdir()
        (site / top / "__init__.py").write_text("")
        record.append(f"{top}/__init__.py,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.mark.parametrize(
    ("req", "name"),
    [
        ("Foo_Bar>=1", "foo-bar"),
        ("numpy==2.4.6", "numpy"),
        ("zope.interface==7.0", "zope-interface"),
        ("requests[socks]>=2.31", "requests"),
        ("  scikit-learn ; python_version >= '3.10'", "scikit-learn"),
        ("torch==2.13.0+cpu", "torch"),
        ("Django~=4.2", "django"),
        ("my.odd__Name---x", "my-odd-name-x"),
        ("pkg @ https://example.com/pkg-1.0-py3-none-any.whl", "pkg"),
    ],
)
def test_requirement_name_forms(req: str, name: str) -> None:
    assert requirement_name(req) == name


def test_the_closure_follows_requirements_and_leaves_extras_out(site: Path) -> None:
    fake_dist(
        site, "tiffin-pa", "1.0", ("tiffin_pb>=1", "tiffin-pc[fast]", "tiffin-pd; extra == 'x'")
    )
    fake_dist(site, "tiffin-pb", "2.0", ("tiffin-pc (>=0.1)",))
    fake_dist(site, "tiffin-pc", "0.3")
    fake_dist(site, "tiffin-pd", "4.0")
    found, missing = installed_pins(["Tiffin_PA"])
    assert found == {"tiffin-pa": "1.0", "tiffin-pb": "2.0", "tiffin-pc": "0.3"}
    assert missing == []


def test_a_real_framework_closure() -> None:
    found, missing = installed_pins(["scikit-learn"])
    assert missing == []
    for dist in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"):
        assert found[dist] == metadata.version(dist)
    assert "torch" not in found  # installed here, but nothing in the closure needs it


def test_missing_requirements_are_the_ones_not_installed_as_written(site: Path) -> None:
    fake_dist(site, "tiffin-pa", "1.0", ("tiffin-absent>=1",))
    found, missing = installed_pins(
        ["tiffin-pa==1.0", "tiffin-nowhere==3.0", "numpy==0.0.1", "tiffin-ghost"]
    )
    # a dependency that is not installed is the lock's business, not a missing requirement
    assert found == {"tiffin-pa": "1.0"}
    assert sorted(missing) == ["numpy==0.0.1", "tiffin-ghost", "tiffin-nowhere==3.0"]


def test_exact_pins_of_the_installed_version_are_found() -> None:
    version = np.__version__
    for req in (f"numpy=={version}", f"numpy==={version}", f"numpy == {version}"):
        assert installed_pins([req]) == ({"numpy": version}, [])


@pytest.mark.parametrize("req", ["tiffin-wild==1.*", "tiffin-label==1.5"])
def test_pins_that_match_the_installed_version_by_pep440_are_found(site: Path, req: str) -> None:
    fake_dist(site, "tiffin-wild", "1.5")
    fake_dist(site, "tiffin-label", "1.5+cpu")
    found, missing = installed_pins([req])
    assert missing == [] and requirement_name(req) in found


@pytest.mark.skipif(sys.platform == "win32", reason="the marker holds on Windows")
def test_dependencies_for_another_platform_are_not_in_the_closure(site: Path) -> None:
    fake_dist(site, "tiffin-pa", "1.0", ("tiffin-winonly; sys_platform == 'win32'",))
    fake_dist(site, "tiffin-winonly", "1.0")
    assert installed_pins(["tiffin-pa"])[0] == {"tiffin-pa": "1.0"}


def test_accelerator_from_labels() -> None:
    assert accelerator_of([]) is None
    assert accelerator_of(["numpy==2.0", "scikit-learn==1.9.1"]) is None
    cpu = accelerator_of(["numpy==2.0", "torch==2.13.0+cpu"])
    assert cpu == {
        "kind": "cpu",
        "package": "torch==2.13.0+cpu",
        "index": "https://download.pytorch.org/whl/cpu",
    }
    cuda = accelerator_of(["torch==2.13.0+cu128"])
    assert cuda is not None and cuda["kind"] == "cuda" and cuda["cuda"] == "12.8"
    assert cuda["index"] == "https://download.pytorch.org/whl/cu128"
    vision = accelerator_of(["TorchVision==0.20.0+cu118"])
    assert vision is not None and vision["cuda"] == "11.8"
    jax = accelerator_of(["jaxlib==0.4.30+cpu"])
    assert jax is not None and jax["kind"] == "cpu"
    for pin in ("nvidia-cublas-cu12==12.8.4.1", "cupy==13.0", "jax-cuda12-plugin==0.4.30"):
        found = accelerator_of([pin])
        assert found == {"kind": "cuda", "package": pin}


@pytest.mark.skipif(sys.platform != "linux", reason="PyPI's torch is a CUDA build on Linux only")
def test_plain_pypi_torch_on_linux_is_a_cuda_build() -> None:
    plain = accelerator_of(["torch==2.13.0"])
    assert plain is not None and plain["kind"] == "cuda" and "cuda" not in plain
    assert accelerator_of(["torchvision==0.20.0"]) is None  # the label is what tells


def test_top_level_owners_is_cached_until_a_folder_on_sys_path_changes(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[int] = []
    real: Callable[[], object] = metadata.packages_distributions

    def counted() -> object:
        walks.append(1)
        return real()

    monkeypatch.setattr(pins.metadata, "packages_distributions", counted)
    first = top_level_owners()  # sys.path gained a folder: walked again
    assert len(walks) == 1
    assert "tiffinowned" not in first and first["numpy"] == ["numpy"]
    first["numpy"].append("poisoned")  # the caller's copy, not the cache
    again = top_level_owners()
    assert len(walks) == 1
    assert again["numpy"] == ["numpy"]

    fake_dist(site, "tiffin-owned", "1.0", top="tiffinowned")
    # Added, then stamped well past the cached time, whatever the clock's granularity.
    stat = os.stat(site)
    os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    after = top_level_owners()
    assert len(walks) == 2
    assert after["tiffinowned"] == ["tiffin-owned"]
    assert top_level_owners()["tiffinowned"] == ["tiffin-owned"]
    assert len(walks) == 2
