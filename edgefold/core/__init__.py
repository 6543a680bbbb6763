"""The bottom layer: the input contract and pixel formats, the per-pixel affine algebra, camera frames and
output statistics. Pure numpy (Pillow for reading images); imports nothing from edgefold but errors."""
