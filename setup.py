import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmattn', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmattn',
    version=read_version(),
    description='Efficient-attention vision backbones (BiFormer, NAT/DiNAT, Slide-Transformer, '
    'GroupMixFormer, Dual-ViT) for mmdet 3.x / mmsegmentation 1.x',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmattn', 'mmattn.*']),
    python_requires='>=3.10',
    # Pins live in requirements/constraints.txt; mmcv must be the compiled 2.1.0 (see README).
    install_requires=[
        'torch>=2.1', 'mmengine>=0.10.7,<1.0', 'mmcv>=2.1.0,<2.2.0', 'mmdet>=3.3.0,<3.4',
        'mmsegmentation>=1.2.2,<1.3', 'pycocotools', 'ftfy', 'regex'
    ],
    license='Apache-2.0',
    zip_safe=False,
)
