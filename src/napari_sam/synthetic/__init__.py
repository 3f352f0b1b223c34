"""Seeded synthetic images and volumes with instance ground truth.

The generators in this module draw scenes from several imaging domains
(fluorescence nuclei, membrane-stained cells, electron microscopy organelles,
X-ray CT / radiographs and underwater RGB photographs), together with their
instance labels. They feed three consumers:

* the trainer of the bundled ``demo`` model (many different looks per domain,
  so that the model generalises to real images it has never seen),
* the napari sample-data contributions,
* the quality tests (fixed seeds, known ground truth).

Every generator is a pure function of its arguments: the same ``seed`` always
gives bit-identical arrays, and all randomness comes from one
``np.random.default_rng(seed)``. Nothing global is touched.

Seed convention
---------------
Seeds ``< 10_000`` (:data:`HELDOUT_SEED_START`) are for training; seeds
``>= 10_000`` are held out and used by the quality tests. :func:`make_dataset`
refuses a seed range that straddles the boundary.

Domains
-------
=================  ======================  ===============================================
name               2D / 3D generator       look
=================  ======================  ===============================================
``nuclei``         nuclei_2d / nuclei_3d   fluorescent nuclei: touching lumpy ellipses
                                           (ellipsoids), varied size/brightness/texture,
                                           uneven background, PSF blur (longer along z),
                                           Poisson + read noise
``cells_membrane`` cells_membrane_2d / _3d bright membranes of a warped Voronoi tissue,
                                           dim cytoplasm, darker nuclei
``em_organelles``  em_organelles_2d /      dark-membrane mitochondria with cristae,
                   em_3d                   vesicles, lysosomes on granular grey
``xray``           xray_2d / xray_3d       dense grains in CT slices/volumes (cupping,
                                           ramps, rings, streaks) or radiographs
``underwater``     underwater_rgb (2D)     coloured fish/coral/rocks in blue-green haze,
                                           caustics, marine snow; (Y, X, 3) RGB
=================  ======================  ===============================================

Conventions
-----------
* Axis order is napari's: 2D images are ``(Y, X)``, volumes ``(Z, Y, X)`` and RGB
  images ``(Y, X, 3)``.
* ``labels`` has the spatial shape of the image, dtype ``int32``, ids
  ``1..N`` consecutive (in placement order) and ``0`` for background. Every
  instance is one connected component with at least ``min_size`` pixels
  (voxels), and in 3D spans at least ``min_slices`` slices.
* ``image`` is ``uint8`` or ``uint16`` (``dtype`` argument). 16-bit images use a
  random camera offset (about 100-2000) and a random dynamic range that does
  not fill the 16 bits, like real detectors.

Examples
--------
>>> from napari_sam.synthetic import nuclei_2d, make_dataset
>>> s = nuclei_2d((256, 256), seed=10_001)
>>> s.image.shape, s.image.dtype, int(s.labels.max()) == s.n_objects
((256, 256), dtype('uint16'), True)
>>> train = make_dataset(["nuclei", "em_organelles"], 8, seed=0)
>>> [t.seed for t in train][:3]
[0, 1, 2]

Modules
-------
``sample`` (SyntheticSample, argument checks, the common frame of a generator),
``fields`` (random fields, blur, outlines), ``detectors`` (cameras, quantisation),
``placement`` (object shapes and their placement), one module per domain (``nuclei``,
``cells``, ``em``, ``xray``, ``underwater``), ``registry`` (DOMAINS, make_dataset) and
``__main__`` (benchmark and montage tools).
"""

from .cells import cells_membrane_2d, cells_membrane_3d
from .em import em_3d, em_organelles_2d
from .nuclei import nuclei_2d, nuclei_3d
from .registry import DOMAINS, DOMAINS_3D, HELDOUT_SEED_START, make_dataset
from .sample import SyntheticSample
from .underwater import underwater_rgb
from .xray import xray_2d, xray_3d

__all__ = [
    "DOMAINS",
    "DOMAINS_3D",
    "HELDOUT_SEED_START",
    "SyntheticSample",
    "cells_membrane_2d",
    "cells_membrane_3d",
    "em_3d",
    "em_organelles_2d",
    "make_dataset",
    "nuclei_2d",
    "nuclei_3d",
    "underwater_rgb",
    "xray_2d",
    "xray_3d",
]
