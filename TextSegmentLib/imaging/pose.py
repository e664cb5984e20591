"""How the head is turned in a volume: a rigid registration to the training subject's head.

The brain models were trained on one head (Colin27) turned up to 20-35 degrees; beyond that, and already from about
15 degrees, they lose accuracy. :func:`estimate_head_pose` registers an input to that head (4 mm templates of the head
and of the brain that ship in ``resources/pose``; a similarity transform, Mattes mutual information, so that any MR
contrast or a CT can be compared with the T1 template) from seven starting rotations (straight, +-35 degrees about
each axis) at 8 mm (the straight start with both templates, the others with the one that fitted it better), refines
the best two at 4 mm, and compares the fit with the best fit that may not rotate. The
engine then resamples a turned head onto the head's own axes (imaging/conform.py, as it does an oblique grid), so that
the model sees it straight, and maps the masks back onto the input's grid.

A rotation is trusted only when the head is turned by more than ``ALIGN_DEGREES`` (and at most ``MAX_DEGREES``),
the rotated fit is clearly better than one along the grid (``MIN_GAIN`` of mutual information) and the field of view
holds ``MIN_COVERAGE`` of the template's brain: a slab, a cut field of view or a scan of something else leaves the
volume as it is. The same fit says where the field of view ends inside the brain and how far the brain goes on
beyond it (``HeadPose.brain_beyond_mm``): where the cut goes through the deep brain the engine shows the cut slices
going on with their mirror image (engine/volume.py). About 2-3 s on one CPU core (it runs on one thread, so that the
same input gives the same pose).

Example:
    >>> import numpy as np, SimpleITK as sitk
    >>> head = load_template("head")
    >>> turned = sitk.Resample(head, head, sitk.Euler3DTransform(centre(head), 0.0, 0.0, np.radians(30)))
    >>> pose = estimate_head_pose(turned)
    >>> round(pose.degrees / 5) * 5, pose.turned
    (30, True)
    >>> estimate_head_pose(head).turned
    False
"""

import functools
import logging
import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..resources import RESOURCES_DIR
from .conform import physical_points, snapped_direction

#: the templates (Colin27 T1 head and brain at 4 mm, uint8; written by scripts/make_pose_template.py)
TEMPLATES_DIR = RESOURCES_DIR / "pose"
TEMPLATE_FILES = {"head": "colin27_head_4mm.nii.gz", "brain": "colin27_brain_4mm.nii.gz"}
#: a head turned by this much or less counts as straight (degrees): 25 while the aligned grid was fitted tightly to
#: the head (a skull-stripped brain then filled the model's slices and aligning at 15-20 degrees lost); 10 since the
#: grid keeps the input's scale (the fixed validation variants, turned up to 20 degrees: 0.7487 at 25, 0.7561 at 20,
#: 0.7610 at 15, 10 and 5)
ALIGN_DEGREES = 10.0
#: a head found turned by more than this is taken for a failed fit (heads lie within about 40 degrees of straight)
MAX_DEGREES = 45.0
#: the mutual information a rotated fit must gain over the best unrotated fit to be trusted
MIN_GAIN = 0.15
#: the share of the template's brain the input's field of view must hold: a field of view cut through the brain is
#: segmented on its own grid, where the fusion knows its edges (engine/fusion.py)
MIN_COVERAGE = 0.9
#: an end of the field of view cuts through the brain when this share of the template's brain lies beyond it
BRAIN_CUT_SHARE = 0.02
#: the starting rotations: straight, and +-35 degrees about each axis
START_DEGREES = 35.0
#: a field of view narrower than this along any axis is too little of a head to tell how it is turned (mm)
MIN_EXTENT_MM = 64.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadPose:
    """The head's axes in a volume. ``rotation``: 3x3 (row-major), its columns the head's left, posterior and
    superior directions in physical LPS; ``degrees``: how far the head is turned against the volume's own index
    axes, as the model sees it on that grid (a straight head on a grid tilted by 30 degrees: 30); ``gain``: how much
    better the rotated fit is than the best unrotated one (mutual information); ``coverage``: the share of the
    template's brain inside the field of view; ``brain_beyond_mm``: per input index axis (i, j, k), how far the brain
    goes on beyond the field of view's (low, high) end, in mm (0 where no more than ``BRAIN_CUT_SHARE`` of the
    template's brain lies beyond it)."""

    rotation: Tuple[float, ...]
    degrees: float
    gain: float
    coverage: float = 1.0
    brain_beyond_mm: Tuple[Tuple[float, float], ...] = ((0.0, 0.0),) * 3

    @property
    def turned(self) -> bool:
        """Whether the head is turned beyond ``ALIGN_DEGREES``, the fit is trusted and the field of view holds the
        brain (then the engine aligns it)."""
        return ALIGN_DEGREES < self.degrees <= MAX_DEGREES and self.gain >= MIN_GAIN and self.coverage >= MIN_COVERAGE

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=float).reshape(3, 3)

    @property
    def world_degrees(self) -> float:
        """How far the head is turned against the anatomical (physical LPS) axes: what the model would see on a grid
        conformed onto them (imaging/conform.py)."""
        return rotation_degrees(self.matrix)

    @property
    def along_grid(self) -> bool:
        """Whether the head lies straighter along the volume's own grid than along the anatomical axes (an
        acquisition tilted to follow the head): a grid that is then conformed would turn the head for the model."""
        return self.coverage >= MIN_COVERAGE and self.degrees < self.world_degrees

    def to_dict(self) -> dict:
        return {
            "degrees": round(self.degrees, 2),
            "gain": round(self.gain, 3),
            "coverage": round(self.coverage, 3),
            "aligned": self.turned,
        }


def rotation_degrees(rotation: np.ndarray) -> float:
    """The angle (degrees) of a 3x3 rotation matrix.

    Example:
        >>> round(rotation_degrees(_rotation(2, 30.0)), 6)
        30.0
    """
    return math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0))))


def centre(image: sitk.Image) -> Tuple[float, float, float]:
    """The physical centre of ``image``'s field of view."""
    return tuple(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()]))


def downsample(image: sitk.Image, spacing: float) -> sitk.Image:
    """``image`` as float32 on a grid of ``spacing`` mm with its own direction: averaged over whole bins of voxels
    first (fast on a 1 mm volume), then smoothed the rest of the way and resampled; intensities clipped to the
    1st-99.5th percentiles so that a few bright voxels do not set the histogram."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    bins = [max(1, int(spacing // s)) for s in image.GetSpacing()]
    if max(bins) > 1 and all(n >= 2 * b for n, b in zip(image.GetSize(), bins)):
        image = sitk.BinShrink(image, bins)
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, round((array.size / 1e6) ** (1 / 3)))  # percentiles of at most about a million voxels
    lo, hi = (float(v) for v in np.percentile(array[::step, ::step, ::step], [1.0, 99.5]))
    image = sitk.Clamp(image, sitk.sitkFloat32, lo, hi)
    sigmas = [math.sqrt(max(0.0, spacing**2 - s**2)) / 2.355 for s in image.GetSpacing()]
    if max(sigmas) > 0 and min(image.GetSize()) >= 4:
        image = sitk.SmoothingRecursiveGaussian(image, sigmas)
    size = [max(2, int(math.ceil(n * s / spacing))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing] * 3, image.GetDirection(), lo
    )


@functools.lru_cache(maxsize=4)
def load_template(name: str, spacing: float = 4.0) -> sitk.Image:
    """The ``"head"`` or ``"brain"`` template (float32) at ``spacing`` mm (4 or coarser)."""
    image = sitk.Cast(sitk.ReadImage(str(TEMPLATES_DIR / TEMPLATE_FILES[name])), sitk.sitkFloat32)
    return image if spacing == 4.0 else downsample(image, spacing)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    vector = [0.0, 0.0, 0.0]
    vector[axis] = 1.0
    return np.asarray(sitk.VersorTransform(vector, math.radians(degrees)).GetMatrix()).reshape(3, 3)


def _start(fixed: sitk.Image, moving: sitk.Image, rotation: np.ndarray) -> sitk.Similarity3DTransform:
    """A similarity transform (template -> input) that centres the two images' masses and turns by ``rotation``."""
    moments = sitk.CenteredTransformInitializerFilter.MOMENTS
    transform = sitk.Similarity3DTransform(
        sitk.CenteredTransformInitializer(fixed, moving, sitk.Similarity3DTransform(), moments)
    )
    transform.SetMatrix(rotation.ravel().tolist())
    return transform


def _fit(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, iterations: int, rotate: bool) -> float:
    """Optimise ``transform`` in place; the final mutual information (lower is better)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.3, 1)  # a fixed seed (and one thread): the same input gives the same pose
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 0.01, iterations, relaxationFactor=0.6)
    # versor (radians), translation (mm), scale: a radian weighs as 1000 mm, so that rotations move as readily as
    # the head (scales estimated from physical shifts left rotations of 35 degrees unfinished in 60 iterations)
    reg.SetOptimizerScales([1.0, 1.0, 1.0, 1e-3, 1e-3, 1e-3, 1.0])
    if not rotate:  # the versor's three parameters stay; translation and scale move
        reg.SetOptimizerWeights([0, 0, 0, 1, 1, 1, 1])
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed, moving)
    return float(reg.GetMetricValue())


def estimate_head_pose(image: sitk.Image, starts: Sequence[float] = (-START_DEGREES, START_DEGREES)) -> HeadPose:
    """The head's axes in ``image`` (see the module docstring); ``starts``: the starting angles about each axis
    besides straight. A field of view narrower than ``MIN_EXTENT_MM``, or one the registration cannot work with,
    counts as straight (``degrees``, ``gain`` and ``coverage`` 0)."""
    straight = HeadPose(tuple(float(v) for v in np.eye(3).ravel()), 0.0, 0.0, 0.0)
    if min(n * s for n, s in zip(image.GetSize(), image.GetSpacing())) < MIN_EXTENT_MM:
        return straight
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # ITK's threaded metric sums in any order: not repeatable
    try:
        return _estimate(image, starts)
    except RuntimeError as exc:  # ITK refuses images too small or too flat to register: leave the volume as it is
        log.info("the head pose could not be estimated (%s); the volume is segmented on its own grid", exc)
        return straight
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _estimate(image: sitk.Image, starts: Sequence[float]) -> HeadPose:
    fine = downsample(image, 4.0)
    coarse = downsample(fine, 8.0)
    candidates = []
    for name in TEMPLATE_FILES:  # a head with its skull, and a brain without (skull-stripped inputs)
        fixed = load_template(name, 8.0)
        transform = _start(fixed, coarse, np.eye(3))
        candidates.append((_fit(fixed, coarse, transform, 60, True), name, transform))
    name = min(candidates, key=lambda c: c[0])[1]  # the template that fits a straight start better
    fixed = load_template(name, 8.0)
    for rotation in [_rotation(a, d) for a in range(3) for d in starts]:
        transform = _start(fixed, coarse, rotation)
        candidates.append((_fit(fixed, coarse, transform, 60, True), name, transform))
    candidates.sort(key=lambda c: c[0])
    best = None
    for _, name, transform in candidates[:2]:
        value = _fit(load_template(name), fine, transform, 100, True)
        if best is None or value < best[0]:
            best = (value, name, transform)
    assert best is not None
    value, name, transform = best
    # the head as the model sees it on the input's grid read along its nearest anatomical axes: the grid's own tilt
    # (direction = tilt @ snapped) undone; the alternative a rotation must beat is a head that lies along the grid
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    tilt = direction @ snapped_direction(image.GetDirection()).T
    unrotated = _fit(load_template(name), fine, _start(load_template(name), fine, tilt), 100, False)
    matrix = np.asarray(transform.GetMatrix(), dtype=float).reshape(3, 3)
    u, _, vt = np.linalg.svd(matrix)
    rotation = u @ vt  # the similarity's isotropic scale removed
    seen = tilt.T @ rotation
    degrees = rotation_degrees(seen)
    coverage, beyond = _coverage(image, transform)
    return HeadPose(tuple(float(v) for v in rotation.ravel()), degrees, unrotated - value, coverage, beyond)


def _coverage(
    image: sitk.Image, transform: sitk.Similarity3DTransform
) -> Tuple[float, Tuple[Tuple[float, float], ...]]:
    """The fraction of the template's brain that ``transform`` (template -> input) places inside ``image``'s field
    of view, and per index axis how far (mm, 98th percentile) it goes on beyond each end where more than
    ``BRAIN_CUT_SHARE`` of it lies beyond that end (0 elsewhere)."""
    brain = load_template("brain")
    k, j, i = np.nonzero(sitk.GetArrayViewFromImage(brain) > 0)
    points = physical_points(brain, np.stack([i, j, k], axis=1))
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    centre_ = np.asarray(transform.GetCenter())
    moved = (points - centre_) @ matrix.T + centre_ + np.asarray(transform.GetTranslation())
    geometry = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    idx = (moved - np.asarray(image.GetOrigin())) @ np.linalg.inv(geometry).T
    if not len(idx):
        return 0.0, ((0.0, 0.0),) * 3
    within = (idx >= -0.5) & (idx <= np.asarray(image.GetSize()) - 0.5)
    beyond = []
    for axis in range(3):
        across = np.delete(within, axis, axis=1).all(axis=1)  # in the field of view along the other two axes
        ends = []
        for depth in (-0.5 - idx[:, axis], idx[:, axis] - (image.GetSize()[axis] - 0.5)):  # voxels past each end
            past = across & (depth > 0)
            share = float(past.mean())
            mm = float(np.percentile(depth[past], 98)) * image.GetSpacing()[axis] if share > BRAIN_CUT_SHARE else 0.0
            ends.append(round(mm, 1))
        beyond.append(tuple(ends))
    return float(within.all(axis=1).mean()), tuple(beyond)  # type: ignore[return-value]


__all__ = [
    "ALIGN_DEGREES",
    "MAX_DEGREES",
    "MIN_COVERAGE",
    "MIN_GAIN",
    "HeadPose",
    "TEMPLATE_FILES",
    "estimate_head_pose",
    "load_template",
    "rotation_degrees",
]
