# DiNAT-Tiny backbone (SHI-Labs/Neighborhood-Attention-Transformer, projects/dinat), swapped into
# the NAT configs by configs/det/dinat_*.py and configs/seg/dinat_*.py: those inherit their NAT
# twin (recipe, custom_imports, out_indices) and add the per-task dilation schedule and drop path.
dinat = dict(
    type='DiNAT',
    arch='tiny',  # same shapes as NAT-Tiny (no layer scale); only the dilations differ
    # Official ImageNet-1k DiNAT-Tiny weights (projects/dinat/checkpoints/imagenet1k/
    # dinat_tiny_in1k_224.pth on shi-labs.com), read directly or converted once with
    #   python tools/convert_ckpt.py dinat dinat_tiny_in1k_224.pth \
    #       checkpoints/dinat_tiny_in1k_224.pth
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/dinat_tiny_in1k_224.pth'))
