"""Batched, seeded image augmentations of the BRB paper, run on the images' device.

Grayscale sets get a random affine map (Table 5); colour sets get the SimCLR CIFAR pipeline (Tables 6 and 7).
Self-labeling's strong view adds one cutout hole (SCAN). Random parameters are drawn per sample from the caller's
generator on its own device, so a seed fixes the output.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from raydc.data.dataset import Dataset
from raydc.data.registry import DatasetInfo

# Half-widths of the uniform ranges: rotation (degrees), shift x and y (fractions of width, height), x-shear (degrees).
AFFINE_HALF_RANGES = (16.0, 0.1, 0.1, 8.0)

CROP_SCALE = (0.08, 1.0)
CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
CROP_TRIES = 10  # as torchvision's RandomResizedCrop, before falling back to the whole image
JITTER_HALF_RANGES = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation factors around 1; hue shift around 0
JITTER_IDENTITY = (1.0, 1.0, 1.0, 0.0)
JITTER_P, GRAYSCALE_P, FLIP_P, SOLARIZE_P = 0.8, 0.2, 0.5, 0.2
SOLARIZE_THRESHOLD = 0.5
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

KINDS = ("auto", "affine", "simclr")
# smooth: fractional shifts, bilinear sampling. torchvision: RandomAffine's whole-pixel shifts and nearest sampling,
# as the BRB authors' pipeline runs it (on 8x8 images a shift of 0.1 width is then 0 or 1 pixel, nothing between).
AFFINE_STYLES = ("smooth", "torchvision")


@functools.lru_cache(maxsize=256)
def _const(values: tuple[float, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small constant tensor, made once per device so that calls do not copy it to the GPU again."""
    return torch.tensor(values, dtype=dtype, device=device)


def _uniform(generator: torch.Generator, rows: int, cols: int) -> torch.Tensor:
    return torch.rand(rows, cols, generator=generator, device=generator.device)


def _uniform_bounds(
    half_ranges: tuple[float, ...], centres: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bounds and widths that map uniform [0, 1) draws onto centre +- half range, column by column."""
    low = _const(tuple(c - h for c, h in zip(centres, half_ranges)), device)
    return low, _const(tuple(2 * h for h in half_ranges), device)


def _sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, align_corners=False) as one batched matmul over cached pixel centres."""
    centres = _pixel_centres(height, width, theta.device, theta.dtype)
    return (centres @ theta.transpose(1, 2)).view(-1, height, width, 2)


@functools.lru_cache(maxsize=32)
def _pixel_centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H*W, 3) rows (x, y, 1) of pixel centres in grid_sample's [-1, 1] coordinates."""
    ys = (2 * torch.arange(height, dtype=torch.float64) + 1) / height - 1
    xs = (2 * torch.arange(width, dtype=torch.float64) + 1) / width - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], -1).view(-1, 3).to(device, dtype)


@functools.lru_cache(maxsize=32)
def _affine_maps(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Matrices that turn parameter rows into affine_grid's theta with a few small matmuls."""
    rad, aspect = math.pi / 180, height / width
    # (angle, shift x, shift y, shear) -> phases (a, a - pi/2, s, -2 shift x, -2 shift y), where a and s are the
    # counter-clockwise angle and shear in radians (torchvision's are clockwise) and shifts are in grid units;
    # cos of the first two phases gives cos a and sin a.
    to_phases = [[-rad, -rad, 0, 0, 0], [0, 0, 0, -2, 0], [0, 0, 0, 0, -2], [0, 0, -rad, 0, 0]]
    phase_offsets = [0, -math.pi / 2, 0, 0, 0]
    # (cos a, sin a, tan s cos a, tan s sin a) -> the output-to-input pixel map, inverse of R(a) @ Shear_x(s) with y
    # pointing down: [[cos - tan*sin, -sin - tan*cos], [sin, cos]], rescaled to per-axis [-1, 1] coordinates.
    to_linear = [[1, 0, 0, 1], [0, -aspect, 1 / aspect, 0], [0, -aspect, 0, 0], [-1, 0, 0, 0]]
    return tuple(torch.tensor(m, dtype=dtype, device=device) for m in (to_phases, phase_offsets, to_linear))


def affine_transform(images: torch.Tensor, params: torch.Tensor, fill: torch.Tensor | float = 0.0,
                     mode: str = "bilinear") -> torch.Tensor:
    """Rotate and x-shear about the centre, then shift, every image at once, with F.affine's geometry, sampling
    pixels by `mode` (grid_sample's bilinear or nearest, as F.affine's interpolation).

    params is (B, 4): clockwise angle in degrees, shift x and shift y as fractions of width and height, x-shear in
    degrees; it may live on another device. Pixels mapped from outside the image take `fill` (scalar or
    (1, C, 1, 1)).
    """
    batch, _, height, width = images.shape
    to_phases, phase_offsets, to_linear = _affine_maps(height, width, images.device, images.dtype)
    phases = torch.addmm(phase_offsets, params.to(images.device, images.dtype), to_phases)
    cos_sin = torch.cos(phases[:, :2])
    features = torch.cat([cos_sin, cos_sin * torch.tan(phases[:, 2:3])], 1)
    linear = (features @ to_linear).view(batch, 2, 2)
    theta = torch.cat([linear, linear @ phases[:, 3:].unsqueeze(2)], 2)
    grid = _sampling_grid(theta, height, width)
    # grid_sample pads with zeros, so sample the offset from `fill` to make outside pixels equal `fill`.
    return F.grid_sample(images - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill


def sample_affine_params(batch: int, generator: torch.Generator,
                         whole_pixels: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 4) uniform draws in the Table 5 ranges, those of torchvision RandomAffine(16, (0.1, 0.1), shear=8).

    With whole_pixels = (height, width), shifts are rounded to whole pixels as RandomAffine rounds them.
    """
    low, width = _uniform_bounds(AFFINE_HALF_RANGES, (0.0,) * 4, generator.device)
    params = torch.addcmul(low, _uniform(generator, batch, 4), width)
    if whole_pixels is not None:
        size = _const((float(whole_pixels[1]), float(whole_pixels[0])), params.device)  # x scales by width
        params[:, 1:3] = torch.round(params[:, 1:3] * size) / size
    return params


@dataclass
class ColourParams:
    theta: torch.Tensor  # (B, 2, 3) crop-and-flip map, as for F.affine_grid
    brightness: torch.Tensor  # (B,) factors, 1 where jitter is not applied
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor  # (B,) shift in turns, 0 where jitter is not applied
    grayscale: torch.Tensor  # (B,) bool
    solarize: torch.Tensor  # (B,) bool

    def to(self, device: torch.device) -> ColourParams:
        return ColourParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def sample_colour_params(batch: int, height: int, width: int, generator: torch.Generator) -> ColourParams:
    """Per-sample parameters of RandomResizedCrop, flip, ColorJitter, RandomGrayscale and RandomSolarize."""
    device = generator.device
    u = _uniform(generator, batch, 2 * CROP_TRIES + 10)
    tries = u[:, : 2 * CROP_TRIES].view(batch, 2, CROP_TRIES)
    area = height * width * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * tries[:, 0])
    log_ratio = CROP_LOG_RATIO[0] + (CROP_LOG_RATIO[1] - CROP_LOG_RATIO[0]) * tries[:, 1]
    # (B, 2, tries): crop width and height of each try
    sizes = torch.sqrt(area.unsqueeze(1) * torch.exp(torch.stack([log_ratio, -log_ratio], 1)))
    image_size = _const((float(width), float(height)), device)
    fits = (sizes <= image_size.view(1, 2, 1)).all(dim=1)
    first = fits.int().argmax(dim=1).view(batch, 1, 1).expand(batch, 2, 1)  # the first try that fits, as torchvision
    size = torch.where(fits.any(dim=1, keepdim=True), sizes.gather(2, first).squeeze(2), image_size)
    rest = u[:, 2 * CROP_TRIES:]
    centre = (rest[:, :2] - 0.5) * (image_size - size)  # crop centre relative to the image centre, in pixels
    flip = torch.where(rest[:, 2:3] < FLIP_P, -1.0, 1.0)
    scale = size / image_size * torch.cat([flip, torch.ones_like(flip)], 1)
    theta = torch.cat([torch.diag_embed(scale), (2 * centre / image_size).unsqueeze(2)], 2)
    low, spread = _uniform_bounds(JITTER_HALF_RANGES, JITTER_IDENTITY, device)
    jittered = torch.addcmul(low, rest[:, 4:8], spread)
    jitter = torch.where(rest[:, 3:4] < JITTER_P, jittered, _const(JITTER_IDENTITY, device))
    return ColourParams(theta, *jitter.unbind(1), grayscale=rest[:, 8] < GRAYSCALE_P, solarize=rest[:, 9] < SOLARIZE_P)


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = _const(GRAY_WEIGHTS, images.device, images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB images in [0, 1] by `shift` turns per sample, keeping saturation and value."""
    value, brightest = images.max(dim=1, keepdim=True)
    chroma = value - images.amin(dim=1, keepdim=True)
    red, green, blue = images.split(1, dim=1)
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sextant = torch.where(
        brightest == 0,
        (green - blue) / safe_chroma,
        torch.where(brightest == 1, 2 + (blue - red) / safe_chroma, 4 + (red - green) / safe_chroma),
    )
    hue = torch.remainder(sextant / 6 + _per_sample(shift), 1.0)
    # Closed-form HSV -> RGB: channel c is value - chroma * clamp(min(k, 4 - k), 0, 1), k = (n_c + 6 hue) mod 6.
    n = _const((5.0, 3.0, 1.0), images.device, images.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * hue, 6.0)
    return value - chroma * torch.minimum(k, 4 - k).clamp(0, 1)


def colour_augment(images: torch.Tensor, params: ColourParams) -> torch.Tensor:
    """Crop-resize-flip, jitter brightness, contrast, saturation and hue (in that order), gray, solarize.

    `images` are RGB in [0, 1]; the output stays in [0, 1].
    """
    grid = _sampling_grid(params.theta.to(images.dtype), images.shape[2], images.shape[3])
    # Crops lie inside the image; border padding keeps interpolation at their edges from darkening.
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = (out * _per_sample(params.brightness)).clamp(0, 1)
    mean_gray = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
    out = torch.lerp(mean_gray, out, _per_sample(params.contrast)).clamp(0, 1)
    out = torch.lerp(_gray(out), out, _per_sample(params.saturation)).clamp(0, 1)
    out = shift_hue(out, params.hue)
    out = torch.where(_per_sample(params.grayscale), _gray(out).expand_as(out), out)
    out = torch.where(_per_sample(params.solarize) & (out >= SOLARIZE_THRESHOLD), 1 - out, out)
    return out.clamp(0, 1)


class Augmenter:
    """Augments a batch of z-transformed images (B, C, H, W); the output keeps shape, dtype and device."""

    kind: str

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, image_shape: tuple[int, int, int]):
        # Raw [0, 1] per-channel statistics of the z-transform, shaped to broadcast over (B, C, H, W).
        self.mean = mean.detach().float().view(1, -1, 1, 1)
        self.std = std.detach().float().view(1, -1, 1, 1)
        self.image_shape = tuple(image_shape)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"{self.kind} augmenter expects images of shape (B, *{self.image_shape}), got {tuple(x.shape)}"
            )
        return self._augment(x, generator)

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class AffineAugmenter(Augmenter):
    kind = "affine"

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, image_shape: tuple[int, int, int],
                 style: str = "smooth"):
        super().__init__(mean, std, image_shape)
        if style not in AFFINE_STYLES:
            raise ValueError(f"unknown affine style {style!r}; choose one of {', '.join(AFFINE_STYLES)}")
        self.style = style
        self.background = -self.mean / self.std  # z-value of raw 0

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        exact = self.style == "torchvision"
        params = sample_affine_params(x.shape[0], generator, tuple(self.image_shape[1:]) if exact else None)
        # The map is linear in pixel values, so it runs in z-space with the background as fill.
        return affine_transform(x, params, fill=self.background.to(x.device, x.dtype),
                                mode="nearest" if exact else "bilinear")


class SimCLRAugmenter(Augmenter):
    kind = "simclr"

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        params = sample_colour_params(x.shape[0], x.shape[2], x.shape[3], generator).to(x.device)
        return (colour_augment(torch.addcmul(mean, x, std), params) - mean) / std


def cutout(images: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one square hole of side `length` per image, as SCAN's Cutout(n_holes=1, random=True).

    The hole's centre pixel is uniform over the image and the hole is clipped at the borders; rows and columns
    centre - length // 2 up to (excluding) centre + length // 2 are covered. On z-transformed images 0 is the mean.
    """
    batch, _, height, width = images.shape
    half = length // 2
    rows = torch.randint(height, (batch, 1, 1, 1), generator=generator, device=generator.device).to(images.device)
    cols = torch.randint(width, (batch, 1, 1, 1), generator=generator, device=generator.device).to(images.device)
    row_index = torch.arange(height, device=images.device).view(1, 1, height, 1)
    col_index = torch.arange(width, device=images.device).view(1, 1, 1, width)
    in_rows = (row_index >= rows - half) & (row_index < rows + half)
    in_cols = (col_index >= cols - half) & (col_index < cols + half)
    return images.masked_fill(in_rows & in_cols, 0.0)


class StrongAugmenter(Augmenter):
    """Self-labeling's strong view: a base augmenter, then one cutout hole of side half the image side.

    SCAN's strong view is RandAugment followed by cutout; here RandAugment is replaced by the base pipeline of
    this module (SimCLR colour for RGB, the Table 5 affine map for grayscale), so both stages run batched on the
    device.
    """

    kind = "strong"

    def __init__(self, base: Augmenter, cutout_length: int | None = None):
        super().__init__(base.mean, base.std, base.image_shape)
        self.base = base
        self.cutout_length = min(base.image_shape[1:]) // 2 if cutout_length is None else cutout_length

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return cutout(self.base(x, generator), self.cutout_length, generator)


def make_strong_augmenter(data: Dataset, affine: str = "smooth") -> StrongAugmenter:
    """The strong view for a Dataset: its default augmenter (make_augmenter) followed by cutout."""
    return StrongAugmenter(make_augmenter(data, affine=affine))


def make_augmenter(
    source: Dataset | DatasetInfo | tuple[int, int, int],
    kind: str = "auto",
    *,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    affine: str = "smooth",
) -> Augmenter:
    """The Table 5 affine augmenter for grayscale, the SimCLR one for colour ("auto" picks by channel count).

    The z-transform statistics come from a Dataset, or from mean/std; without either the inputs are taken to be
    raw images in [0, 1]. `affine` is the affine map's style (AFFINE_STYLES).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation kind {kind!r}; choose one of {', '.join(KINDS)}")
    if isinstance(source, Dataset):
        image_shape = source.image_shape
        mean = source.mean if mean is None else mean
        std = source.std if std is None else std
    elif isinstance(source, DatasetInfo):
        image_shape = source.image_shape
    else:
        image_shape = tuple(source)
    channels = image_shape[0]
    mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean)
    std = torch.ones(channels) if std is None else torch.as_tensor(std)
    if kind == "auto":
        kind = "simclr" if channels == 3 else "affine"
    if kind == "simclr" and channels != 3:
        raise ValueError(f"simclr augmentation needs 3 colour channels, got image shape {image_shape}")
    if kind == "simclr":
        return SimCLRAugmenter(mean, std, image_shape)
    return AffineAugmenter(mean, std, image_shape, affine)
