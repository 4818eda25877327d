import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))

# What mim reads from an installed package: `mim search` the model index, `mim train/test` the
# tools and configs. OpenMMLab packages carry them under <package>/.mim/ (mmdet's setup.py).
MIM_ITEMS = ('tools', 'configs', 'model-index.yml')


def read_version():
    namespace = {}
    with open(osp.join(ROOT, 'mmattn', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name):
    """Requirement lines of ``requirements/<name>.txt`` (comments and blank lines dropped)."""
    with open(osp.join(ROOT, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def add_mim_extension():
    """Put the configs, tools and model index under ``mmattn/.mim`` for mim.

    A development install (``setup.py develop``, i.e. ``pip install -e . --no-use-pep517``)
    links them, so edits show at once; building a wheel or an sdist copies them. PEP 660
    editable installs (the default of ``pip install -e .``) get neither: openmim 0.3.9 looks
    for the package in site-packages, where such an install has no folder (docs: mim).
    """
    if 'develop' in sys.argv:
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_dir = osp.join(ROOT, 'mmattn', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(ROOT, item), osp.join(mim_dir, item)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_dir), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmattn',
        version=read_version(),
        description='Efficient-attention vision backbones (BiFormer, NAT/DiNAT, Slide-Transformer, '
        'GroupMixFormer, Dual-ViT) for mmdet 3.x / mmsegmentation 1.x',
        long_description=open(osp.join(ROOT, 'README.md'), encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        author='mmattn contributors',
        url='https://github.com/mmattn/mmattn',
        keywords='computer vision, object detection, semantic segmentation, attention, openmmlab',
        packages=find_packages(include=['mmattn', 'mmattn.*']),
        include_package_data=True,
        package_data={'mmattn': ['.mim/model-index.yml', '.mim/configs/**/*', '.mim/tools/**/*']},
        python_requires='>=3.10',
        # Lower bounds only, so an existing OpenMMLab environment keeps its CUDA torch and its
        # mmcv: torch 2.4 brought torch.serialization.add_safe_globals (the checkpoint
        # allow-list), numpy 1.25 numpy.dtypes. The tested pins: requirements/constraints.txt.
        # mmengine's upper bound is the range mmattn/engine/mmengine_internals.py supports.
        install_requires=[
            'torch>=2.4', 'numpy>=1.25', 'mmengine>=0.10.7,<0.11', 'mmcv>=2.0.0rc4,<2.2.0',
            'mmdet>=3.3.0,<3.4', 'mmsegmentation>=1.2.2,<1.3', 'pycocotools', 'ftfy', 'regex'
        ],
        extras_require={
            'tests': read_requirements('tests'),
            'deploy': read_requirements('deploy'),
            'docs': read_requirements('docs'),
            'lint': read_requirements('lint'),
            'mim': ['openmim>=0.3.9'],
        },
        classifiers=[
            'Development Status :: 4 - Beta',
            'License :: OSI Approved :: Apache Software License',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3.10',
            'Programming Language :: Python :: 3.11',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
            'Topic :: Scientific/Engineering :: Image Recognition',
        ],
        license='Apache-2.0',
        zip_safe=False,
    )
