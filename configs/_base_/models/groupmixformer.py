# GroupMixFormer-S backbone shared by configs/det/groupmixformer_*.py and
# configs/seg/groupmixformer_*.py. The official repository (AILab-CVC/GroupMixFormer) released
# classification only: no detection or segmentation config, drop path or out_indices exists, so
# the settings below that are not the classification model's own are mmattn's choices.
custom_imports = dict(imports=['mmattn'], allow_failed_imports=False)

groupmixformer = dict(
    _delete_=True,  # replaces the base config's ResNet backbone whole
    type='GroupMixFormer',
    arch='small',  # dims 80-160-320-320, depths 2-4-12-4 (the repo's default yaml)
    # the four maps of the official return_interm_layers=True, without output norms
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.2,  # mmattn choice: no official value (0.1-0.3 is typical for this size)
    norm_cfg=dict(type='BN'),  # SyncBN officially; sync_bn below converts it
    norm_eval=False,  # mmattn choice: the aggregator BN statistics adapt to the new data
    # Official ImageNet-1k GroupMixFormer-S weights (a {'model': ...} file): init_cfg reads it
    # directly (norm4/head dropped, names checked strictly), or convert it once with
    #   python tools/convert_ckpt.py groupmixformer SRC.pth checkpoints/groupmixformer_small.pth
    # It is read only when training starts (init_weights), so the configs build without it. Each
    # config copies the path into its top-level `pretrained`.
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/groupmixformer_small.pth'))

# the official model uses SyncBN everywhere; mmengine converts every BN when distributed
sync_bn = 'torch'
