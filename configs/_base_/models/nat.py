# NAT-Tiny backbone of the official detection / segmentation models (SHI-Labs/
# Neighborhood-Attention-Transformer), shared by configs/det/nat_*.py and configs/seg/nat_*.py;
# each of those sets its drop_path_rate. The DiNAT configs inherit the NAT ones and swap in the
# DiNAT backbone of dinat.py beside this file.
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

# Official ImageNet-1k NAT-Tiny weights (projects/nat/checkpoints/CLS/nat_tiny.pth on
# shi-labs.com). The file is a plain tensor state dict, so init_cfg reads it directly (classifier
# dropped, norm0..3 set to 1/0, names checked strictly); or convert it once with
#   python tools/convert_ckpt.py nat nat_tiny.pth checkpoints/nat_tiny.pth
# It is read only when training starts (init_weights), so the configs build without it.
# (Each config copies the path into its top-level `pretrained`: a second base may not define a
# key that the mmdet/mmseg base defines too, and some of those, e.g. Swin's, define `pretrained`.)
nat = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='NAT',
    arch='tiny',  # E=64, depths 3-4-18-5, heads 2-4-8-16, mlp 3, K=7, no layer scale
    dilations=None,  # NAT: dilation 1 everywhere
    out_indices=(0, 1, 2, 3),  # official: all four levels, each through its norm0..3
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/nat_tiny.pth'))
