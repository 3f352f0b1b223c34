"""The table of known checkpoints: :class:`ModelSpec` and :data:`MODEL_SPECS` (name,
architecture, URL, published checksums and size, description, publisher), as data.

:mod:`.registry` makes :data:`~napari_sam.models.registry.REGISTRY` from this table; add a
model there with :func:`~napari_sam.models.registry.register`, or here for a built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARCHITECTURES", "DEMO_NAME", "MODEL_SPECS", "ModelSpec"]

#: Name of the bundled model.
DEMO_NAME = "demo"

#: The architectures a :class:`ModelSpec` may name (``"cnn"``: the demo model's encoder;
#: ``"hiera_*"``: SAM 2.1's Hiera encoders, loaded as :class:`~napari_sam.models.sam2.Sam2Model`).
ARCHITECTURES = ("vit_b", "vit_l", "vit_h", "vit_t", "cnn", "hiera_t", "hiera_s", "hiera_b+",
                 "hiera_l")


@dataclass(frozen=True)
class ModelSpec:
    """One named checkpoint.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"vit_b"``.
    architecture : str
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"vit_t"`` (MobileSAM's TinyViT) or ``"cnn"``
        (the demo encoder).
    url : str or None
        Where to download it from (``http(s)://`` or ``file://``); None for a file that
        ships inside the package (the demo model).
    sha256 : str or None
        Published SHA-256 of the file (hex). Used to verify the file when given.
    size : int or None
        Size of the file in bytes, when published. A cached file of another size is
        treated as corrupt without hashing it.
    filename : str
        Name of the file in the cache folder (or in the package's ``weights/`` folder).
    description : str
        What the model is and what it is good for.
    source : str
        Who publishes the weights, e.g. ``"Meta AI"`` or ``"micro-sam"``.
    xxh128 : str or None
        Published xxHash-128 of the file (hex). micro-sam publishes only this one, so it
        verifies their models; it needs the ``xxhash`` package.
    approx_size : int or None
        About how many bytes the file has, where ``size`` is not published (micro-sam's
        models): shown as ``~375 MB``, never used to check a file.
    """

    name: str
    architecture: str
    url: str | None
    sha256: str | None
    size: int | None
    filename: str
    description: str
    source: str
    xxh128: str | None = None
    approx_size: int | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"model {self.name!r}: architecture must be one of {ARCHITECTURES}, "
                f"got {self.architecture!r}"
            )
        if self.url is not None and self.sha256 is None and self.xxh128 is None:
            raise ValueError(
                f"model {self.name!r} has a URL but no checksum; downloads must be verifiable"
            )
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"model {self.name!r}: filename must be a bare file name")

    @property
    def hash_algorithm(self) -> str | None:
        """``"sha256"`` when a SHA-256 is known, else ``"xxh128"``, else None."""
        if self.sha256:
            return "sha256"
        if self.xxh128:
            return "xxh128"
        return None

    @property
    def expected_hash(self) -> str | None:
        """Hex digest the file must have under :attr:`hash_algorithm`."""
        return self.sha256 or self.xxh128

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``"algorithm:hex"`` form."""
        if self.hash_algorithm is None:
            return None
        return f"{self.hash_algorithm}:{self.expected_hash}"

    @property
    def family(self) -> str:
        """``"sam2"`` for SAM 2.1 (Hiera) checkpoints, ``"sam1"`` for the others."""
        return "sam2" if self.architecture.startswith("hiera") else "sam1"

    @property
    def packaged(self) -> bool:
        """True for a file that ships with the package instead of being downloaded."""
        return self.url is None


# Sources (see docs/models.md for the full record):
# - URLs of Meta's checkpoints: facebookresearch/segment-anything README, repeated in
#   micro-sam's micro_sam/util.py models(); SHA-256: micro-sam's registry before it moved to
#   xxh128 (micro_sam/util.py at commit 4d7a40662c8f52e71cdcc4d94836a5ea94ce3d9b), matching
#   the values many other projects pin; sizes: the Content-Length of Meta's server as
#   recorded by several projects.
# - micro-sam models: micro_sam/v1/util.py models() at commit
#   df11268e9a40c4a8944dc387134403c2dec050d3 (BioImage.IO-hosted files, xxh128 only;
#   micro-sam publishes neither a SHA-256 nor a size for them). vit_t_lm and vit_t_em_organelles:
#   micro_sam/util.py models() of micro-sam 1.8.14 (PyPI), same URLs and xxh128.
# - vit_t is MobileSAM's weights/mobile_sam.pt (ChaoningZhang/MobileSAM, unchanged since commit
#   a509aac54fdd7af59f843135f2f7cee307283c88); SHA-256 and size as pinned by several projects,
#   the same SHA-256 as micro-sam's registry gave its copy of the file, whose xxh128 micro-sam
#   1.8.14 lists.
# - SAM 2.1: URLs of Meta's sam2 repository (checkpoints/download_ckpts.sh, release 092824);
#   Meta publishes no checksums. SHA-256: micro-sam's dev-branch registry of the same URLs
#   (micro_sam/v2/util.py HASHES at commit 05c57cce615abd66915365b7ca6c9bf552b71455), equal to
#   the values several other projects record after downloading; sizes: as those projects
#   record them (docs/sam2.md).
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name=DEMO_NAME,
        architecture="cnn",
        url=None,
        sha256=None,
        size=None,
        filename="demo.pt",
        description=(
            "Small CNN-encoder SAM trained by napari-sam-stacks on its own synthetic "
            "scenes; ships with the package. For trying the tools out and for tests, not "
            "for real data."
        ),
        source="napari-sam-stacks",
    ),
    ModelSpec(
        name="vit_b",
        architecture="vit_b",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size=375_042_383,
        filename="sam_vit_b_01ec64.pth",
        description=(
            "Segment Anything ViT-B (91M parameters): the fastest original SAM; a good "
            "default for natural-looking images, X-ray and underwater scenes on a CPU."
        ),
        source="Meta AI",
        xxh128="6923c33df3637b6a922d7682bfc9a86b",
    ),
    ModelSpec(
        name="vit_l",
        architecture="vit_l",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size=1_249_524_607,
        filename="sam_vit_l_0b3195.pth",
        description=(
            "Segment Anything ViT-L (308M parameters): most of ViT-H's quality at about "
            "half its cost; use it on a GPU."
        ),
        source="Meta AI",
        xxh128="a82beb3c660661e3dd38d999cc860e9a",
    ),
    ModelSpec(
        name="vit_h",
        architecture="vit_h",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size=2_564_550_879,
        filename="sam_vit_h_4b8939.pth",
        description=(
            "Segment Anything ViT-H (636M parameters): the largest and most accurate "
            "original SAM; needs a GPU."
        ),
        source="Meta AI",
        xxh128="97698fac30bd929c2e6d8d8cc15933c2",
    ),
    ModelSpec(
        name="vit_t",
        architecture="vit_t",
        url="https://github.com/ChaoningZhang/MobileSAM/raw/"
            "a509aac54fdd7af59f843135f2f7cee307283c88/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size=40_728_226,
        filename="mobile_sam.pt",
        description="MobileSAM (TinyViT image encoder, 10M parameters, SAM's prompt encoder "
            "and mask decoder): several times faster than ViT-B on a CPU, a little less "
            "accurate; the choice for a laptop without a GPU.",
        source="MobileSAM (Zhang et al.)",
        xxh128="8eadbc88aeb9d8c7e0b4b60c3db48bd0",
    ),
    ModelSpec(
        name="vit_b_lm",
        architecture="vit_b",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "diplomatic-bug/1.2/files/vit_b.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_b_lm.pt",
        description=(
            "micro-sam ViT-B finetuned on light microscopy (cells and nuclei, "
            "fluorescence and label-free): the first choice for LM stacks."
        ),
        source="micro-sam (BioImage.IO 'diplomatic-bug' 1.2)",
        xxh128="fe9252a29f3f4ea53c15a06de471e186",
        approx_size=375_000_000,
    ),
    ModelSpec(
        name="vit_t_lm",
        architecture="vit_t",
        url="https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "faithful-chicken/1.1/files/vit_t.pt",
        sha256=None,
        size=None,
        filename="vit_t_lm.pt",
        description="micro-sam MobileSAM (TinyViT) finetuned on light microscopy (cells and "
            "nuclei): vit_b_lm's task at a fraction of its cost; LM on a laptop.",
        source="micro-sam (BioImage.IO 'faithful-chicken' 1.1)",
        xxh128="72ec5074774761a6e5c05a08942f981e",
        approx_size=40_000_000,
    ),
    ModelSpec(
        name="vit_l_lm",
        architecture="vit_l",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "idealistic-rat/1.2/files/vit_l.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_l_lm.pt",
        description=(
            "micro-sam ViT-L finetuned on light microscopy: better than vit_b_lm on hard "
            "cases, about three times slower; use it on a GPU."
        ),
        source="micro-sam (BioImage.IO 'idealistic-rat' 1.2)",
        xxh128="017f20677997d628426dec80a8018f9d",
        approx_size=1_200_000_000,
    ),
    ModelSpec(
        name="vit_b_em_organelles",
        architecture="vit_b",
        url=(
            "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "noisy-ox/1.2/files/vit_b.pt"
        ),
        sha256=None,
        size=None,
        filename="vit_b_em_organelles.pt",
        description=(
            "micro-sam ViT-B finetuned on electron microscopy organelles (mitochondria, "
            "nuclei and other round compartments)."
        ),
        source="micro-sam (BioImage.IO 'noisy-ox' 1.2)",
        xxh128="f3bf2ed83d691456bae2c3f9a05fb438",
        approx_size=375_000_000,
    ),
    ModelSpec(
        name="vit_t_em_organelles",
        architecture="vit_t",
        url="https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
            "greedy-whale/1/files/vit_t.pt",
        sha256=None,
        size=None,
        filename="vit_t_em_organelles.pt",
        description="micro-sam MobileSAM (TinyViT) finetuned on electron microscopy "
            "organelles (mitochondria, nuclei): vit_b_em_organelles' task on a laptop.",
        source="micro-sam (BioImage.IO 'greedy-whale' 1)",
        xxh128="253474720c497cce605e57c9b1d18fd9",
        approx_size=40_000_000,
    ),
    ModelSpec(
        name="sam2.1_hiera_tiny",
        architecture="hiera_t",
        url=_SAM2_URL + "sam2.1_hiera_tiny.pt",
        sha256="7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        size=156_008_466,
        filename="sam2.1_hiera_tiny.pt",
        description="SAM 2.1 Hiera-T (39M parameters): memory propagation through stacks "
            "(segment --method sam2) and 2D clicking; the SAM 2 choice on a CPU.",
        source="Meta AI (SAM 2.1)",
    ),
    ModelSpec(
        name="sam2.1_hiera_small",
        architecture="hiera_s",
        url=_SAM2_URL + "sam2.1_hiera_small.pt",
        sha256="6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        size=184_416_285,
        filename="sam2.1_hiera_small.pt",
        description="SAM 2.1 Hiera-S (46M parameters): a little more accurate than Hiera-T "
            "at a little more cost.",
        source="Meta AI (SAM 2.1)",
    ),
    ModelSpec(
        name="sam2.1_hiera_base_plus",
        architecture="hiera_b+",
        url=_SAM2_URL + "sam2.1_hiera_base_plus.pt",
        sha256="a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        size=323_606_802,
        filename="sam2.1_hiera_base_plus.pt",
        description="SAM 2.1 Hiera-B+ (81M parameters): the balanced SAM 2 model; use a GPU "
            "for long stacks.",
        source="Meta AI (SAM 2.1)",
    ),
    ModelSpec(
        name="sam2.1_hiera_large",
        architecture="hiera_l",
        url=_SAM2_URL + "sam2.1_hiera_large.pt",
        sha256="2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        size=898_083_611,
        filename="sam2.1_hiera_large.pt",
        description="SAM 2.1 Hiera-L (224M parameters): the most accurate SAM 2; needs a GPU.",
        source="Meta AI (SAM 2.1)",
    ),
)
