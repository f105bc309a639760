"""Dataset loading, verification, failure messages and augmentations of raydc.data."""
from __future__ import annotations

import hashlib
import io
import shutil
import socket
import time
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import raydc.data.files as files
from raydc.data import (
    DatasetCorrupt,
    DatasetUnavailable,
    check_available,
    dataset_info,
    dataset_names,
    default_data_dir,
    load_dataset,
    make_augmenter,
)
from raydc.data.augment import (
    AffineAugmenter,
    ColourParams,
    SimCLRAugmenter,
    affine_transform,
    colour_augment,
    sample_affine_params,
    sample_colour_params,
)
from raydc.data.dataset import resized, standardize
from raydc.data.torchvision_sets import CIFAR100_COARSE, equalize_histograms

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the real dataset files are not present at {SHARED_DATA}"
)
FILE_SETS = {"optdigits": (5620, (1, 8, 8)), "usps": (9298, (1, 16, 16)), "mnist-test": (10000, (1, 28, 28))}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch) -> list[str]:
    """No test reaches the network or the real user cache; returns the URLs that a download attempted."""
    attempted: list[str] = []

    def refuse(url: str):
        attempted.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(files, "open_url", refuse)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAYDC_DATA_DIR", str(SHARED_DATA))
    return attempted


def _serve(monkeypatch, content_of) -> list[str]:
    """Answer downloads with content_of(url) instead of the network."""
    served: list[str] = []

    def fake_open(url: str):
        served.append(url)
        return io.BytesIO(content_of(url))

    monkeypatch.setattr(files, "open_url", fake_open)
    return served


def _shared_bytes(url: str) -> bytes:
    name = url.rsplit("/", 1)[1]
    return next(SHARED_DATA.glob(f"*/{name}")).read_bytes()


# --- loading -------------------------------------------------------------------------------------------------


@needs_shared_data
@pytest.mark.parametrize("name", list(FILE_SETS))
def test_file_dataset_loads_z_transformed(name):
    n, shape = FILE_SETS[name]
    data = load_dataset(name)  # from $RAYDC_DATA_DIR
    assert (data.n, data.image_shape, data.dim, data.n_clusters) == (n, shape, int(np.prod(shape)), 10)
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    counts = torch.bincount(data.y)
    assert len(counts) == 10 and counts.min() > 0 and counts.sum() == n
    std, mean = torch.std_mean(data.x, dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(1), atol=1e-4) and torch.allclose(std, torch.ones(1), atol=1e-4)
    raw = data.x * data.std.view(1, -1, 1, 1) + data.mean.view(1, -1, 1, 1)
    assert raw.min() > -1e-5 and raw.max() < 1 + 1e-5 and raw.max() > 0.99  # scaled to [0, 1] before the z-transform
    info = dataset_info(name)
    assert (info.n_samples, info.n_clusters, info.image_shape) == (n, 10, shape)
    assert not info.color and info.source == "files"


@needs_shared_data
def test_digits_is_the_optdigits_test_split():
    digits, optdigits = load_dataset("digits"), load_dataset("optdigits")
    raw_digits = digits.x * digits.std + digits.mean
    raw_tail = optdigits.x[-1797:] * optdigits.std + optdigits.mean
    assert torch.allclose(raw_digits, raw_tail, atol=1e-5)
    assert torch.equal(digits.y, optdigits.y[-1797:])


def test_dataset_flat_is_a_view_and_to_moves_everything():
    images = torch.rand(6, 3, 4, 5)
    original = images.clone()
    data = standardize("toy", images, torch.arange(6) % 2, 2)
    flat = data.flat()
    assert flat.shape == (6, 60) and flat.data_ptr() == data.x.data_ptr()
    assert torch.allclose(data.mean, images.mean(dim=(0, 2, 3)))
    assert torch.equal(images, original)  # the caller's tensor was left alone
    moved = data.to("cpu")
    assert moved.name == "toy" and moved.image_shape == (3, 4, 5) and moved.dim == 60


def test_standardize_scales_uint8_to_unit_range():
    images = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(4, 1, 1, 1)
    data = standardize("toy", images, torch.zeros(4, dtype=torch.long), 1)
    assert torch.allclose(data.mean, torch.tensor([0.5])) and torch.allclose(data.std, torch.tensor([0.5]))
    assert torch.equal(data.x.flatten(), torch.tensor([-1.0, 1.0, -1.0, 1.0]))


def test_resize_is_the_authors_resize_then_normalize():
    from torchvision.transforms.v2 import functional as TF

    raw = torch.rand(5, 1, 8, 8)
    data = standardize("toy", raw, torch.zeros(5, dtype=torch.long), 1)
    big = resized(data, 28)
    # Table 5's pipeline: statistics of the native images, Resize (28, 28), then Normalize
    expected = TF.normalize(TF.resize(raw, [28, 28], antialias=False), data.mean.tolist(), data.std.tolist())
    assert big.image_shape == (1, 28, 28) and torch.allclose(big.x, expected, atol=1e-5)
    assert resized(data, None) is data and resized(big, 28) is big


@pytest.mark.parametrize("resize,inputs", [(28, 784), (None, 64)])
def test_a_grayscale_trial_trains_on_images_resized_as_table_5_says(tmp_path, resize, inputs):
    from raydc.files.checkpoint import load
    from raydc.engine.train import fit

    config = {"train": {"epochs": 1}, "pretrain": {"epochs": 0}, "data": {"resize": resize}}
    assert fit(config, checkpoint_dir=tmp_path).status == "finished"
    weights = load(tmp_path / "trial.pt")["model"]
    first = next(w for name, w in weights.items() if name.endswith("encoder.0.weight"))
    assert first.shape == (1024, inputs)  # 8 × 8 digits resized to 28 × 28, or at their native size


def test_dataset_info_needs_no_files(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYDC_DATA_DIR", str(tmp_path / "nowhere"))
    sizes = {name: (dataset_info(name).n_samples, dataset_info(name).n_clusters) for name in dataset_names()}
    assert sizes["gtsrb"] == (7860, 5) and sizes["cifar100-20"] == (60000, 20) and sizes["mnist"] == (70000, 10)
    assert all(dataset_info(name).color == (dataset_info(name).image_shape[0] == 3) for name in dataset_names())
    assert not (tmp_path / "nowhere").exists()


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    assert default_data_dir() == SHARED_DATA
    monkeypatch.delenv("RAYDC_DATA_DIR")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "raydc"


@pytest.mark.parametrize("call", [load_dataset, dataset_info, check_available])
def test_unknown_name_lists_known_names(call):
    with pytest.raises(ValueError) as raised:
        call("mnist-fashion")
    assert "mnist-fashion" in str(raised.value)
    assert all(name in str(raised.value) for name in dataset_names())


# --- verification and failures ----------------------------------------------------------------------------


@needs_shared_data
def test_flipped_byte_is_reported_as_corrupt(tmp_path):
    copy = tmp_path / "data" / "optdigits"
    shutil.copytree(SHARED_DATA / "optdigits", copy)
    damaged = copy / "optdigits.tes"
    damaged.chmod(0o644)
    content = bytearray(damaged.read_bytes())
    content[1000] ^= 0x01
    damaged.write_bytes(bytes(content))
    actual = hashlib.sha256(content).hexdigest()
    for attempt in (lambda: load_dataset("optdigits", data_dir=tmp_path / "data"),
                    lambda: check_available("optdigits", tmp_path / "data")):
        with pytest.raises(DatasetCorrupt) as raised:
            attempt()
        message = str(raised.value)
        assert str(damaged) in message and actual in message
        assert "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8" in message


def test_missing_files_with_failing_download_fail_fast_with_one_message(tmp_path, offline):
    empty = tmp_path / "empty"
    start = time.monotonic()
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset("usps", data_dir=empty)
    assert time.monotonic() - start < 5
    message = str(raised.value)
    for fragment in ("'usps'", "zip.train.gz", "zip.test.gz", str(empty),
                     "https://hastie.su.domains/ElemStatLearn/datasets/zip.train.gz", "network disabled"):
        assert fragment in message
    assert "\n" not in message and raised.value.__suppress_context__
    assert offline == ["https://hastie.su.domains/ElemStatLearn/datasets/zip.train.gz"]
    assert not list((empty / "usps").iterdir())  # no partial download left behind


def test_missing_files_without_download_name_files_and_directories(tmp_path, offline):
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset("mnist-test", data_dir=tmp_path / "empty", download=False)
    message = str(raised.value)
    assert "mnist-test/t10k-images-idx3-ubyte.gz" in message and "mnist-test/t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "empty") in message and str(tmp_path / "home" / ".cache" / "raydc") in message
    assert offline == []


@needs_shared_data
def test_download_is_verified_and_lands_in_data_dir(tmp_path, monkeypatch):
    served = _serve(monkeypatch, _shared_bytes)
    data = load_dataset("optdigits", data_dir=tmp_path / "data")
    assert data.n == 5620 and len(served) == 2
    assert sorted(p.name for p in (tmp_path / "data" / "optdigits").iterdir()) == ["optdigits.tes", "optdigits.tra"]
    check_available("optdigits", tmp_path / "data")  # now offline-ready
    assert load_dataset("optdigits", data_dir=tmp_path / "data").n == 5620 and len(served) == 2


def test_download_with_wrong_content_is_rejected(tmp_path, monkeypatch):
    _serve(monkeypatch, lambda url: b"<html>moved</html>")
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset("optdigits", data_dir=tmp_path / "data")
    message = str(raised.value)
    assert hashlib.sha256(b"<html>moved</html>").hexdigest() in message and "optdigits.tra" in message
    assert not list((tmp_path / "data" / "optdigits").iterdir())


@needs_shared_data
def test_unwritable_data_dir_downloads_into_user_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no directory can be created below it")
    _serve(monkeypatch, _shared_bytes)
    assert load_dataset("usps", data_dir=blocker / "data").n == 9298
    cached = tmp_path / "home" / ".cache" / "raydc" / "usps"
    assert sorted(p.name for p in cached.iterdir()) == ["zip.test.gz", "zip.train.gz"]
    check_available("usps", blocker / "data")  # later lookups find the cached copy


@needs_shared_data
def test_check_available_never_downloads(tmp_path, offline, monkeypatch):
    import torchvision.datasets

    constructed: list[bool] = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: constructed.append(True))
    for name in ("usps", "optdigits", "mnist-test", "mnist"):
        with pytest.raises(DatasetUnavailable) as raised:
            check_available(name, tmp_path / "empty")
        assert name in str(raised.value) and str(tmp_path / "empty") in str(raised.value)
    assert "torchvision/MNIST/raw/train-images-idx3-ubyte" in str(raised.value)
    assert offline == [] and constructed == []
    check_available("digits", tmp_path / "empty")
    for name in FILE_SETS:
        check_available(name)


def test_torchvision_download_failure_is_one_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets

    class Unreachable:
        def __init__(self, root, train=True, download=False):
            assert download and socket.getdefaulttimeout() is not None  # downloads run with a timeout
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://mirror/, got:\n"
                               "<urlopen error [Errno -3] Temporary failure in name resolution>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Unreachable)
    timeout_before = socket.getdefaulttimeout()
    with pytest.raises(DatasetUnavailable) as raised:
        load_dataset("mnist", data_dir=tmp_path / "data")
    message = str(raised.value)
    assert "'mnist'" in message and "MNIST/raw/t10k-labels-idx1-ubyte" in message and str(tmp_path / "data") in message
    assert "name resolution" in message and "\n" not in message
    assert socket.getdefaulttimeout() == timeout_before


def test_torchvision_set_is_cached_as_uint8(tmp_path, monkeypatch):
    import torchvision.datasets

    class FakeMNIST:
        def __init__(self, root, train=True, download=False):
            n = 60000 if train else 10000
            self.data = (torch.arange(n * 784) % 251).to(torch.uint8).view(n, 28, 28)
            self.targets = torch.arange(n) % 10

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    first = load_dataset("mnist", data_dir=tmp_path / "data")
    cache = tmp_path / "data" / "torchvision" / "mnist.pt"
    assert cache.is_file() and torch.load(cache, weights_only=True)["images"].dtype == torch.uint8
    monkeypatch.setattr(torchvision.datasets, "MNIST", None)  # a second load must not need torchvision
    second = load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    assert (second.n, second.image_shape) == (70000, (1, 28, 28)) and torch.equal(first.x, second.x)
    check_available("mnist", tmp_path / "data")


def test_histogram_equalisation_matches_pil():
    from PIL import Image, ImageOps

    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(4, 3, 32, 32, generator=generator) * 50 + 60).to(torch.uint8)  # low contrast
    images[1, 2] = 9  # a flat channel stays flat
    images[2, 0] = torch.randint(0, 3, (32, 32), generator=generator).to(torch.uint8) * 100  # three levels
    expected = torch.stack([
        torch.from_numpy(np.array(ImageOps.equalize(Image.fromarray(image.permute(1, 2, 0).numpy())))).permute(2, 0, 1)
        for image in images
    ])
    equalised = equalize_histograms(images)
    assert torch.equal(equalised, expected)
    assert equalised[0].amax() == 255 and equalised[0].amin() < 10  # the contrast was actually stretched


def test_cifar100_coarse_table_groups_five_fine_classes_each():
    assert torch.equal(torch.bincount(CIFAR100_COARSE), torch.full((20,), 5))
    # apple -> fruit and vegetables, aquarium fish -> fish, baby -> people, bear -> large carnivores
    assert CIFAR100_COARSE[:4].tolist() == [4, 1, 14, 8]


# --- augmentation -------------------------------------------------------------------------------------------


def _colour_data() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return standardize("toy", torch.rand(16, 3, 32, 32, generator=generator) * 0.8, torch.zeros(16), 1)


def _affine_params(batch: int, angle: float = 0.0, shift_x: float = 0.0, shift_y: float = 0.0, shear: float = 0.0):
    return torch.tensor([[angle, shift_x, shift_y, shear]]).repeat(batch, 1)


def test_affine_rotation_by_90_degrees_matches_rot90():
    for size in (5, 6):
        images = torch.rand(3, 2, size, size)
        rotated = affine_transform(images, _affine_params(3, angle=90.0))  # clockwise, as torchvision's affine
        assert torch.allclose(rotated, torch.rot90(images, -1, dims=(-2, -1)), atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_affine_matches_torchvision_affine(mode):
    """F.affine's geometry; nearest sampling (the torchvision style's) equal to its NEAREST pixel for pixel."""
    import torchvision.transforms.functional as tf
    from torchvision.transforms import InterpolationMode

    images = torch.rand(1, 2, 28, 28, generator=torch.Generator().manual_seed(0))
    for angle, shift_x, shift_y, shear in ((16.0, 0, 0, 0), (-10.0, 3, -2, 8.0), (13.3, -1, 3, -7.7)):
        expected = tf.affine(images, angle=angle, translate=[shift_x, shift_y], scale=1.0, shear=[shear, 0.0],
                             interpolation=InterpolationMode(mode))
        params = _affine_params(1, angle, shift_x / 28, shift_y / 28, shear)
        close = torch.equal if mode == "nearest" else lambda a, b: torch.allclose(a, b, atol=1e-4)
        assert close(affine_transform(images, params, mode=mode), expected)


def test_whole_pixel_shifts_are_drawn_as_random_affine_draws_them():
    params = sample_affine_params(20000, torch.Generator().manual_seed(0), whole_pixels=(8, 6))
    pixels_x, pixels_y = params[:, 1] * 6, params[:, 2] * 8
    assert torch.equal(pixels_x, pixels_x.round()) and torch.equal(pixels_y, pixels_y.round())
    # RandomAffine on 8 rows: round(U(-0.8, 0.8)) is ±1 with probability 0.3 / 0.8; on 6 columns round(U(-0.6, 0.6))
    assert pixels_y.abs().max() == 1 and abs(pixels_y.abs().mean() - 0.375) < 0.015
    assert abs(pixels_x.abs().mean() - 0.1 / 0.6) < 0.015
    assert params[:, 0].abs().max() > 15.9 and params[:, 3].abs().max() > 7.9  # angle and shear are not rounded
    assert (params[:, 0] != params[:, 0].round()).float().mean() > 0.99


def test_affine_zero_parameters_are_identity_and_translation_fills():
    images = torch.rand(2, 1, 4, 6)
    assert torch.allclose(affine_transform(images, _affine_params(2)), images, atol=1e-5)
    half_turn = affine_transform(images, _affine_params(2, angle=180.0))
    assert torch.allclose(half_turn, images.flip(-1, -2), atol=1e-5)  # also for non-square images
    shifted = affine_transform(images, _affine_params(2, shift_x=1 / 6), fill=-3.0)
    assert torch.allclose(shifted[..., 1:], images[..., :-1], atol=1e-5)
    assert torch.allclose(shifted[..., 0], torch.full_like(shifted[..., 0], -3.0), atol=1e-5)
    down = affine_transform(images, _affine_params(2, shift_y=1 / 4))
    assert torch.allclose(down[..., 1:, :], images[..., :-1, :], atol=1e-5)
    sheared = affine_transform(images, _affine_params(2, shear=8.0))
    assert torch.allclose(sheared[..., 1:3, :], images[..., 1:3, :], atol=0.15)  # rows near the centre barely move
    assert not torch.allclose(sheared, images, atol=1e-3)


def test_affine_parameters_cover_table_5_ranges():
    params = sample_affine_params(20000, torch.Generator().manual_seed(0))
    for values, bound in zip(params.unbind(1), (16.0, 0.1, 0.1, 8.0)):
        assert values.abs().max() <= bound and values.min() < -0.95 * bound and values.max() > 0.95 * bound


@needs_shared_data
def test_affine_augmenter_is_seeded_and_keeps_background():
    data = load_dataset("mnist-test")
    augment = make_augmenter(data)
    assert isinstance(augment, AffineAugmenter)
    batch = data.x[:256]
    out = augment(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == batch.dtype and torch.isfinite(out).all()
    assert torch.equal(out, augment(batch, torch.Generator().manual_seed(1)))
    assert not torch.allclose(out, augment(batch, torch.Generator().manual_seed(2)))
    assert (out - batch).abs().mean() > 0.1
    background = torch.full_like(batch, float(-data.mean / data.std))  # raw value 0 everywhere
    assert torch.allclose(augment(background, torch.Generator().manual_seed(1)), background, atol=1e-5)


def test_torchvision_style_augmenter_only_moves_pixels():
    """Nearest sampling moves pixels and fills the border with the background; it never blends two pixels."""
    data = load_dataset("digits")
    batch = data.x[:64]
    exact = make_augmenter(data, affine="torchvision")
    out = exact(batch, torch.Generator().manual_seed(1))
    background = torch.tensor([float(-data.mean / data.std)])

    def distance_to_own_pixels(images):  # of every output pixel to the nearest value of its input or the background
        return torch.stack([(moved.flatten()[:, None] - torch.cat([image.flatten(), background])).abs().amin(1)
                            for image, moved in zip(batch, images)])

    assert distance_to_own_pixels(out).max() < 1e-5  # up to the rounding of the fill offset
    smooth = make_augmenter(data)(batch, torch.Generator().manual_seed(1))  # same draws, bilinear and fractional
    assert distance_to_own_pixels(smooth).max() > 0.1
    with pytest.raises(ValueError, match="unknown affine style"):
        make_augmenter(data, affine="bicubic")


def test_colour_pipeline_matches_torchvision_functional():
    import torchvision.transforms.functional as tf

    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    params = ColourParams(
        theta=torch.tensor([[1.0, 0, 0], [0, 1, 0]]).repeat(4, 1, 1),
        brightness=torch.tensor([1.3, 0.7, 1.0, 1.2]),
        contrast=torch.tensor([1.2, 0.6, 1.0, 0.9]),
        saturation=torch.tensor([0.8, 1.2, 1.0, 1.1]),
        hue=torch.tensor([0.1, -0.1, 0.0, 0.05]),
        grayscale=torch.tensor([False, False, True, False]),
        solarize=torch.tensor([False, True, False, False]),
    )
    expected = []
    for i, image in enumerate(images):
        image = tf.adjust_brightness(image, params.brightness[i].item())
        image = tf.adjust_contrast(image, params.contrast[i].item())
        image = tf.adjust_saturation(image, params.saturation[i].item())
        image = tf.adjust_hue(image, params.hue[i].item())
        image = tf.rgb_to_grayscale(image, 3) if params.grayscale[i] else image
        expected.append(tf.solarize(image, 0.5) if params.solarize[i] else image)
    assert torch.allclose(colour_augment(images, params), torch.stack(expected), atol=1e-5)
    no = torch.zeros(4, dtype=torch.bool)
    flip = ColourParams(torch.tensor([[-1.0, 0, 0], [0, 1, 0]]).repeat(4, 1, 1), torch.ones(4), torch.ones(4),
                        torch.ones(4), torch.zeros(4), grayscale=no, solarize=no)
    assert torch.allclose(colour_augment(images, flip), images.flip(-1), atol=1e-5)
    corner = replace(flip, theta=torch.tensor([[0.5, 0, -0.5], [0, 0.5, -0.5]]).repeat(4, 1, 1))  # top-left quarter
    grey = torch.full((4, 3, 8, 8), 0.6)
    assert torch.allclose(colour_augment(grey, corner), grey, atol=1e-6)  # crops at the border are not darkened


def test_colour_parameters_follow_simclr_probabilities():
    params = sample_colour_params(20000, 32, 32, torch.Generator().manual_seed(0))
    jittered = params.brightness != 1
    for rate, expected in ((jittered, 0.8), (params.grayscale, 0.2), (params.solarize, 0.2),
                           (params.theta[:, 0, 0] < 0, 0.5)):
        assert abs(rate.float().mean().item() - expected) < 0.02
    area = params.theta[:, 0, 0].abs() * params.theta[:, 1, 1]
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6
    reach = params.theta[:, :, 2].abs() + params.theta[:, :, :2].abs().sum(-1)
    assert reach.max() <= 1 + 1e-5  # every crop lies inside the image
    assert params.hue[jittered].abs().max() <= 0.1 and params.saturation[jittered].min() >= 0.8


def test_simclr_augmenter_is_seeded_and_stays_in_range():
    data = _colour_data()
    augment = make_augmenter(data)
    assert isinstance(augment, SimCLRAugmenter)
    out = augment(data.x, torch.Generator().manual_seed(5))
    assert out.shape == data.x.shape and out.dtype == data.x.dtype and torch.isfinite(out).all()
    assert torch.equal(out, augment(data.x, torch.Generator().manual_seed(5)))
    assert not torch.allclose(out, augment(data.x, torch.Generator().manual_seed(6)))
    assert (out - data.x).abs().mean() > 0.1
    low = (0 - data.mean) / data.std
    high = (1 - data.mean) / data.std
    per_channel = out.transpose(0, 1).reshape(3, -1)
    assert (per_channel.amin(1) >= low - 1e-4).all() and (per_channel.amax(1) <= high + 1e-4).all()


def test_make_augmenter_choices_and_input_checks():
    assert isinstance(make_augmenter(dataset_info("cifar10")), SimCLRAugmenter)
    assert isinstance(make_augmenter(dataset_info("cifar10"), "affine"), AffineAugmenter)
    assert isinstance(make_augmenter((1, 16, 16)), AffineAugmenter)
    with pytest.raises(ValueError, match="3 colour channels"):
        make_augmenter(dataset_info("usps"), "simclr")
    with pytest.raises(ValueError, match="unknown augmentation kind"):
        make_augmenter((1, 8, 8), "mixup")
    with pytest.raises(ValueError, match="shape"):
        make_augmenter((1, 8, 8))(torch.zeros(2, 1, 16, 16), torch.Generator())
