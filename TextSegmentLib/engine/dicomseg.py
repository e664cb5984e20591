"""DICOM Segmentation output (``.dcm``): one binary segment per prompt that was found, built with highdicom.

- **DICOM input** (a series folder or a single ``.dcm`` file): the segmentation references the source series. Its
  files are read again with pydicom (headers only), matched to the volume's slices by position, and passed to
  highdicom as the source images, so the SEG carries the study, patient, frame of reference and the UIDs of every
  source instance.
- **NIfTI, NRRD, MHA or an in-memory image:** highdicom needs source images to take the geometry and the patient and
  study from, and the input has none. :func:`synthetic_sources` makes one minimal header per slice (CT or MR image
  storage, no pixels) with the volume's exact geometry and **new** study, series and frame of reference UIDs. The SEG
  then references a series that exists nowhere; the JSON report says so (``dicom.note``). To reference a real series,
  segment the DICOM series itself.

Segments: label = the prompt; category, type and Left/Right modifier = the terminology codes that the ``.seg.nrrd``
writer puts in its TerminologyEntry (:func:`TextSegmentLib.prompts.match_prompt`); recommended display colour = the
same colour. A prompt that was not found gets no segment (the report lists it, with ``dicom_segment_number`` None);
overlapping segments are kept whole (a binary SEG stores each segment in its own frames). When no prompt was found
there is nothing a DICOM Segmentation can hold, and nothing is written.

Writing follows every other writer (:mod:`.writers`): a temporary file in the destination folder, read back with
highdicom and pydicom and compared mask by mask before it is renamed into place.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

#: SOP classes of the synthesised source headers
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: the category and type of a prompt with no terminology code: anatomical structure (SNOMED CT)
FALLBACK_CATEGORY = ("SCT", "123037004", "Anatomical Structure")
FALLBACK_TYPE = ("SCT", "91723000", "Anatomical Structure")
NON_DICOM_NOTE = (
    "the input was not DICOM: the segmentation references a series of new UIDs (study, series, frame of reference) "
    "made for it, with the input's geometry; to reference the original images, segment the DICOM series itself"
)


class DicomSegError(ValueError):
    """The result cannot be written as a DICOM Segmentation (the message says why and what to do)."""


def _highdicom():
    try:
        import highdicom
        import pydicom
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DicomSegError(f"DICOM SEG output needs highdicom and pydicom ({exc}); pip install highdicom") from exc
    return highdicom, pydicom


@dataclass
class Sources:
    """The source images of a segmentation, one per slice k of the volume (in k order), and where they came from."""

    datasets: List[Any]
    referenced: bool  # True: the input's own DICOM files; False: synthesised headers with new UIDs
    note: Optional[str] = None


# --- source images ---------------------------------------------------------------------------------------------
def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def dicom_files(source: Any) -> List[Path]:
    """The DICOM files an input path was read from: the series of a folder, a single DICOM file, or [] (not DICOM).

    Example:
        >>> dicom_files("scan.nii.gz")
        []
    """
    if not isinstance(source, (str, Path)):
        return []
    path = Path(source)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        return [Path(f) for f in reader.GetGDCMSeriesFileNames(str(path), series[0])] if len(series) == 1 else []
    return [path] if path.is_file() and _is_dicom_file(path) else []


def _slice_positions(image: sitk.Image) -> np.ndarray:
    return np.array([image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(image.GetSize()[2])])


def _dicom_sources(image: sitk.Image, files: Sequence[Path]) -> Sources:
    """The input's DICOM headers in slice order, each matched to slice k by its ImagePositionPatient."""
    _, pydicom = _highdicom()
    datasets = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    size = image.GetSize()
    where = f"the DICOM series of {Path(files[0]).parent}"
    if len(datasets) != size[2] or any(int(d.Rows) != size[1] or int(d.Columns) != size[0] for d in datasets):
        raise DicomSegError(
            f"{where} ({len(datasets)} files) does not match the segmented volume ({size[0]} x {size[1]} x {size[2]}); "
            "write a .nii.gz or .seg.nrrd instead"
        )
    expected = _slice_positions(image)
    spacing = image.GetSpacing()[2] if size[2] > 1 else 1.0
    ordered: List[Any] = [None] * size[2]
    for d in datasets:
        position = np.array([float(v) for v in d.ImagePositionPatient])
        distance = np.linalg.norm(expected - position, axis=1)
        k = int(np.argmin(distance))
        if distance[k] > max(1e-3, 0.05 * spacing) or ordered[k] is not None:
            raise DicomSegError(f"{where}: a file's position {position.tolist()} matches no slice of the volume")
        ordered[k] = d
    return Sources(ordered, True)


def synthetic_sources(image: sitk.Image, is_ct: bool, description: str = "TextSegment input") -> Sources:
    """Minimal CT/MR image headers (no pixel data) for a volume that came without DICOM: one per slice, the volume's
    exact geometry, new study, series and frame of reference UIDs. What highdicom needs to build a SEG; never written.

    Example:
        >>> img = sitk.Image(4, 3, 2, sitk.sitkInt16)
        >>> s = synthetic_sources(img, is_ct=False)
        >>> len(s.datasets), s.referenced, s.datasets[1].ImagePositionPatient
        (2, False, [0.0, 0.0, 1.0])
    """
    _, pydicom = _highdicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    orientation = [round(float(v), 8) for v in list(direction[:, 0]) + list(direction[:, 1])]
    sx, sy, sz = (float(v) for v in image.GetSpacing())
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sop_class = CT_IMAGE_STORAGE if is_ct else MR_IMAGE_STORAGE
    out = []
    for k, position in enumerate(_slice_positions(image)):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT" if is_ct else "MR"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Anonymous^", "TextSegment", "", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 1, k + 1, description[:64]
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = [sy, sx]  # row spacing (between rows, along j), then column spacing (along i)
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = image.GetSize()[1], image.GetSize()[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        out.append(ds)
    return Sources(out, False, NON_DICOM_NOTE)


def sources_for(result: Any) -> Sources:
    """The input's DICOM files when it was read from DICOM, else synthesised headers (see the module docstring)."""
    image = result.volume.image
    files = dicom_files(getattr(result.volume, "name", None))
    if files:
        return _dicom_sources(image, files)
    return synthetic_sources(image, bool(result.volume.is_ct))


def seg_problem(path: Any) -> Optional[str]:
    """None when ``path`` reads as a DICOM Segmentation (header only), else what is wrong with it."""
    _, pydicom = _highdicom()
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for a damaged file
        return f"it is not a readable DICOM file ({exc})"
    if str(getattr(ds, "SOPClassUID", "")) != SEG_STORAGE:
        return "it is a DICOM file but not a DICOM Segmentation"
    return None


# --- segments ----------------------------------------------------------------------------------------------------
def _codes(entry: Optional[str]) -> Tuple[Sequence[str], Sequence[str], Optional[Sequence[str]]]:
    """(category, type, modifier or None) of a Slicer terminology entry string (``context~category~type~modifier~...``).

    Example:
        >>> e = "ctx~SCT^123037004^Anatomical Structure~SCT^64033007^Kidney~SCT^7771000^Left~actx~^^~^^"
        >>> _codes(e)
        (['SCT', '123037004', 'Anatomical Structure'], ['SCT', '64033007', 'Kidney'], ['SCT', '7771000', 'Left'])
    """
    if not entry:
        return FALLBACK_CATEGORY, FALLBACK_TYPE, None
    parts = entry.split("~")
    category, kind, modifier = (parts[i].split("^") if len(parts) > i else ["", "", ""] for i in (1, 2, 3))
    if not all(kind) or not all(category):
        return FALLBACK_CATEGORY, FALLBACK_TYPE, None
    return category, kind, modifier if all(modifier) else None


def segment_description(number: int, prompt: str, model: str) -> Any:
    """The highdicom SegmentDescription of one prompt: label, codes and colour as the labelmap writers use."""
    hd, _ = _highdicom()
    from pydicom.sr.codedict import codes

    from ..prompts import match_prompt, safe_text

    label = safe_text(prompt)[:64]
    match = match_prompt(prompt)
    category, kind, modifier = _codes(match.entry)
    r, g, b = (int(round(255 * c)) for c in match.color)
    fields = dict(
        segment_number=number,
        segment_label=label,
        segmented_property_category=hd.sr.CodedConcept(category[1], category[0], category[2]),
        segmented_property_type=hd.sr.CodedConcept(kind[1], kind[0], kind[2]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="TextSegment", version=model[:64], family=codes.cid7162.ArtificialIntelligence
        ),
    )
    color = hd.color.CIELabColor.from_rgb(r, g, b)
    try:
        description = hd.seg.SegmentDescription(**fields, display_color=color)
    except TypeError:  # a highdicom without display_color: the attribute it would write
        description = hd.seg.SegmentDescription(**fields)
        description.RecommendedDisplayCIELabValue = list(color.value)
    if modifier is not None:  # laterality: a modifier of the property type (the standard's place for it)
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept(modifier[1], modifier[0], modifier[2])
        ]
    return description


# --- the segmentation --------------------------------------------------------------------------------------------
@dataclass
class DicomSeg:
    """A built DICOM Segmentation, the masks it must hold (found prompts, ``(k, j, i)`` each) and their numbers."""

    dataset: Any
    masks: List[np.ndarray]
    numbers: Dict[int, int]  # prompt index -> segment number (found prompts only)
    sources: Sources


def build_dicom_seg(result: Any, sources: Optional[Sources] = None) -> DicomSeg:
    """The highdicom Segmentation of ``result``: one binary segment per found prompt, in prompt order.

    Raises :class:`DicomSegError` when no prompt was found (a DICOM Segmentation needs at least one segment).
    """
    hd, _ = _highdicom()
    from pydicom.uid import generate_uid

    from .. import __version__

    found = [i for i, s in enumerate(result.segments) if s.found]
    if not found:
        raise DicomSegError(
            "none of the prompts was found, and a DICOM Segmentation must hold at least one segment; nothing was "
            "written (write a .nii.gz or .seg.nrrd to keep an empty result)"
        )
    sources = sources or sources_for(result)
    model = result.info.get("model", {}) or {}
    model_id = f"{model.get('name') or 'model'}-v{model.get('version') or '0'}"
    masks = [result.mask(i) for i in found]
    numbers = {i: n + 1 for n, i in enumerate(found)}
    pixels = np.stack(masks, axis=-1).astype(np.uint8)  # (frames = slices k, rows j, columns i, segments)
    descriptions = [segment_description(numbers[i], result.states[i].prompt, model_id) for i in found]
    dataset = hd.seg.Segmentation(
        source_images=sources.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="TextSegment developers",
        manufacturer_model_name="TextSegment",
        software_versions=f"TextSegmentLib {__version__}",
        device_serial_number=model_id[:64],
        series_description="TextSegment segmentation",
        content_description="Text-prompted segmentation",
        content_label="TEXTSEGMENT",
    )
    return DicomSeg(dataset, masks, numbers, sources)


def verify_dicom_seg(path: str, seg: DicomSeg, name: Path) -> None:
    """Read ``path`` back with pydicom and highdicom; every segment must equal its mask and reference the sources."""
    from .writers import WriteFailed

    hd, pydicom = _highdicom()
    try:
        raw = pydicom.dcmread(path)
        back = hd.seg.segread(path)
        uids = [str(d.SOPInstanceUID) for d in seg.sources.datasets]
        numbers = sorted(seg.numbers.values())
        pixels = back.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=numbers, assert_missing_frames_are_empty=True
        )
    except Exception as exc:  # noqa: BLE001 - pydicom/highdicom raise many kinds; either way the file is bad
        raise WriteFailed(f"{name} could not be written completely ({exc}); is the disk full?") from exc
    same = (
        str(raw.SOPClassUID) == SEG_STORAGE
        and list(back.segment_numbers) == numbers
        and str(raw.ReferencedSeriesSequence[0].SeriesInstanceUID) == str(seg.sources.datasets[0].SeriesInstanceUID)
        and pixels.shape[-1] == len(seg.masks)
        and all(np.array_equal(pixels[..., n] > 0, mask) for n, mask in enumerate(seg.masks))
    )
    if not same:
        raise WriteFailed(f"{name} does not read back as written (is the disk full?); nothing was replaced")


def dicom_report(seg: DicomSeg) -> Dict[str, Any]:
    """What the JSON report says about the DICOM SEG: its UIDs, the series it references, and the note when the
    input was not DICOM."""
    ds, source = seg.dataset, seg.sources.datasets[0]
    return {
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "referenced_series_instance_uid": str(source.SeriesInstanceUID),
        "references_input": seg.sources.referenced,
        "segments": len(seg.masks),
        "note": seg.sources.note,
    }


def save_dicom_seg(result: Any, path: Path, overwrite: bool, report_of) -> Dict[str, Any]:
    """Build, write and verify the DICOM SEG of ``result`` at ``path`` and its report ``<path>.json``.

    ``report_of(visible_voxels, extra)`` makes the report dict (see :func:`.writers.save_result`); every segment is
    whole in a binary SEG, so each prompt's visible voxels are its own.
    """
    from ..atomic import atomic_file
    from .writers import _check_target, _verify_text, own_report, report_text

    seg = build_dicom_seg(result)
    visible = np.array([int(s.mask.sum()) for s in result.states], dtype=np.int64)
    report = report_of(visible, dicom_report(seg))
    for i, entry in enumerate(report["segments"]):
        entry["dicom_segment_number"] = seg.numbers.get(i)
    text = report_text(report)
    report_path = Path(str(path) + ".json")
    replace = overwrite or own_report(report_path, path)  # a user's own file there is never replaced
    _check_target(report_path, replace, " (the report written next to the output)")
    with atomic_file(report_path, ".json", overwrite=replace, verify=_verify_text(text, report_path)) as rtmp:
        Path(rtmp).write_text(text, encoding="utf-8")
        _verify_text(text, report_path)(rtmp)  # before the segmentation is committed (the report's commit follows)
        with atomic_file(path, ".dcm", overwrite=overwrite, verify=lambda tmp: verify_dicom_seg(tmp, seg, path)) as tmp:
            seg.dataset.save_as(tmp, enforce_file_format=True)
    return report
