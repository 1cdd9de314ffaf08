"""Quality control of `prepare`: a picture per subject, the transform's rotation and scales, the similarity to
the template, warnings, and which subjects are far below the others (flagged).

Flag rule: a subject is flagged when its similarity (Pearson correlation with the template inside the
template's brain, after registration) is below MIN_SIMILARITY, or, among at least MIN_SUBJECTS_FOR_OUTLIERS
subjects, below median - OUTLIER_MADS * 1.4826 * MAD (at least MIN_GAP below the median), or its brain volume
is outside BRAIN_ML.
"""
import csv
import io

import numpy as np
from scipy import ndimage

from tf3dstylegan.io import display_scale, volume_tile, write_png, write_text_atomic

MIN_SIMILARITY = 0.6
OUTLIER_MADS, MIN_GAP, MIN_SUBJECTS_FOR_OUTLIERS = 5.0, 0.05, 5
BRAIN_ML = (600.0, 2500.0)
SCALE_RANGE = (0.75, 1.33)
REPORT_COLUMNS = ("file", "output", "status", "flag", "similarity", "brain_ml", "rotation_deg", "scales", "warnings",
                  "seconds")
OUTLINE_RGB = (255, 40, 40)
QC_PANEL_PX = 192  # the smallest middle plane is enlarged to at least this height


def rotation_and_scales(world_to_mni):
    """(rotation angle in degrees, singular values = scales) of the linear part of a 4x4 affine."""
    u, s, vt = np.linalg.svd(np.asarray(world_to_mni)[:3, :3])
    rotation = u @ vt
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos))), s


def similarity(volume, template, template_brain):
    """Pearson correlation of a volume with the template over the template's brain voxels."""
    a, b = volume[template_brain], template[template_brain]
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def warnings_for(brain_ml, scales, reflected, cut_in_scan, cut_in_output):
    found = []
    if not BRAIN_ML[0] <= brain_ml <= BRAIN_ML[1]:
        found.append(f"brain volume {brain_ml:.0f} ml outside {BRAIN_ML[0]:.0f}-{BRAIN_ML[1]:.0f}")
    if scales.min() < SCALE_RANGE[0] or scales.max() > SCALE_RANGE[1]:
        found.append(f"scales {scales.min():.2f}-{scales.max():.2f} outside {SCALE_RANGE[0]}-{SCALE_RANGE[1]}")
    if reflected:
        found.append("the transform mirrors the scan (left-right swapped header?)")
    if cut_in_scan:
        found.append("the brain mask touches the scan's edge (brain cut off?)")
    if cut_in_output:
        found.append("the brain reaches the output grid's edge")
    return found


def qc_image(volume, template_brain):
    """uint8 RGB [H, W, 3]: the three middle planes of a [0, 1] volume with the template brain's outline."""
    outline = template_brain & ~ndimage.binary_erosion(template_brain)
    scale = display_scale(volume.shape, QC_PANEL_PX)
    gray = np.nan_to_num(volume_tile(volume, scale), nan=0.0)
    edge = np.nan_to_num(volume_tile(outline.astype(np.float32), scale), nan=0.0) > 0.5
    rgb = np.repeat(np.rint(np.clip(gray, 0, 1) * 255.0).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[edge] = OUTLINE_RGB
    return rgb


def write_qc_image(path, volume, template_brain):
    return write_png(path, qc_image(volume, template_brain))


def flag_reasons(rows):
    """{output name: reason} of the subjects to flag among report rows (dicts with 'similarity', 'brain_ml')."""
    values = np.array([row["similarity"] for row in rows], np.float64)
    median = float(np.median(values)) if len(values) else 0.0
    mad = float(np.median(np.abs(values - median))) if len(values) else 0.0
    cut = median - max(OUTLIER_MADS * 1.4826 * mad, MIN_GAP)
    reasons = {}
    for row in rows:
        found = []
        if row["similarity"] < MIN_SIMILARITY:
            found.append(f"similarity {row['similarity']:.3f} below {MIN_SIMILARITY}")
        elif len(rows) >= MIN_SUBJECTS_FOR_OUTLIERS and row["similarity"] < cut:
            found.append(f"similarity {row['similarity']:.3f} far below the others' (median {median:.3f}, "
                         f"cut {cut:.3f})")
        if not BRAIN_ML[0] <= row["brain_ml"] <= BRAIN_ML[1]:
            found.append(f"brain volume {row['brain_ml']:.0f} ml")
        if found:
            reasons[row["output"]] = "; ".join(found)
    return reasons


def write_report(path, rows):
    """prepare_report.tsv: one row per subject, REPORT_COLUMNS, atomically."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column, "")) for column in REPORT_COLUMNS])
    return write_text_atomic(path, out.getvalue())


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value) if value and isinstance(value[0], str) else \
            ",".join(f"{v:.3f}" for v in value)
    return str(value)
