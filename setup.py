"""Install tf3dstylegan: `pip install -e .` (add `[test]` for the test tools)."""
from setuptools import find_packages, setup

setup(
    name="tf3dstylegan",
    version="0.1.0",
    description="3D-StyleGAN for brain MRI in TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf3dstylegan", "tf3dstylegan.*", "dnnlib", "dnnlib.*"]),
    package_data={"": ["*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.0",
        "numpy",
        "scipy",
        "nibabel",
        "absl-py",
        "nilearn",  # ships the MNI152 T1 template used by the built-in demo dataset
    ],
    extras_require={"test": ["pytest"]},
)
