"""From raw T1 scans to training data: N4 bias correction, deepbet skull stripping (its LinkNet3d in Keras),
affine registration to the MNI152 template, the paper's grids, quality control, synthetic test heads.

Modules load lazily: `linknet` needs Keras; `register` and `bias` need SimpleITK; the rest NumPy, SciPy and
nibabel. The folder-level API is `tf3dstylegan.prepare.prepare_folder`.
"""
