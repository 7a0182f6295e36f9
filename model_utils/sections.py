"""Which configuration keys form which section, and which sections each entry script reads.

One table, in the order of ``DIV2K_config.yaml``: ``--help`` of an entry script lists only
its own sections, each under its title (``export.py --help`` shows no ``--lr``). An option of
another entry script's section is still accepted (the scripts in ``scripts/`` and older
command lines pass shared option lists to several entry points) and has no effect there.
"""
SECTIONS = {  # name -> (title, keys)
    "device": ("device", ("enable_modelarts", "data_url", "checkpoint_url", "train_url", "device_target", "device_id",
                          "mode")),
    "model": ("model", ("model", "variant", "scale", "default_models", "default_variants", "pre_trained",
                        "pretrained_dir", "n_colors", "act", "linear_block_type", "feature_size", "adder_eta")),
    "eval_data": ("evaluation data", ("data_path", "eval_datasets", "sample_fallback")),
    "cache": ("LR cache", ("cache_dir",)),
    "protocol": ("evaluation protocol", ("gt_mod", "metric_channel", "shave")),
    "inference": ("inference (tiling, self-ensemble)", ("self_ensemble", "tile_size", "tile_overlap", "max_tile_mem_gb",
                                                               "pixel_range")),
    "train_data": ("training data", ("train_path", "patch_size", "batch_size", "val_data_path", "val_datasets",
                                     "num_workers", "dataset_enlarge_ratio", "channel_shuffle", "train_cache_gb")),
    "optimisation": ("optimisation", ("beta1", "beta2", "amsgrad", "weight_decay", "clip_grad_norm", "ema_decay",
                                      "amp_level", "loss_scale", "loss_scale_value", "residual_loss_weight",
                                      "freeze_residual_steps", "max_bad_steps")),
    "schedule": ("learning-rate schedule", ("lr", "min_lr", "warmup_steps", "total_steps", "lr_scheduler",
                                            "lr_milestones", "lr_gamma")),
    "training_run": ("training run (validation, checkpoints, logs)", (
        "val_every", "seed", "ckpt_dir", "init_from", "qat", "resume", "overwrite", "save_every", "save_every_minutes",
        "keep_last_ckpt",
        "log_every", "tensorboard")),
    "quantization": ("quantization (post-training; empty quant_method = float evaluation)", (
        "quant_method", "w_bit", "a_bit", "quant_placement", "w_symmetric", "int8_scope", "fp_scope", "bit_table",
        "calib_batch", "equalize", "weight_grid", "input_minmax", "percentile", "dbdc_p",
        "pac_hr_patch", "save_quant_ckpt")),
    "calibration_data": ("calibration images (quantization; export --quant int8 of a checkpoint without deployment "
                         "grids)", ("calib_path", "calib_num", "calib_seed")),
    "pac": ("pixel-aware calibration (quant_method dbdc_pac)", (
        "pac_act_iters", "pac_weight_iters", "pac_act_lr", "pac_act_lr_min", "pac_weight_lr", "pac_weight_lr_min",
        "pac_batch", "pac_feature_weight", "pac_relative_features", "pac_loss", "pac_graph")),
    "recon": ("learned rounding and block reconstruction (quant_method dbdc_recon)", (
        "recon_iters", "recon_block", "recon_batch", "recon_round_lr", "recon_act_lr", "recon_round_weight",
        "recon_warmup", "recon_drop", "recon_rounding", "recon_act")),
    "outputs": ("outputs", ("output_path",)),
    "eval_outputs": ("evaluation outputs", ("save_sr", "result_file")),
    "export": ("export", ("file_format", "target", "export_file", "input_shape", "quant", "io_dtype",
                          "phone_extras", "export_check")),
    "infer": ("images to upscale", ("input_path", "model_file")),
}

ENTRY_SECTIONS = {
    "train": ("device", "model", "train_data", "cache", "protocol", "optimisation", "schedule", "training_run",
              "quantization", "calibration_data", "pac", "recon"),
    "eval": ("device", "model", "eval_data", "cache", "protocol", "inference", "quantization", "calibration_data", "pac", "recon", "outputs",
             "eval_outputs"),
    # export.py --quant int8 from float weights calibrates and scores the phone file (src/engine/phone.py)
    "export": ("device", "model", "export", "quantization", "calibration_data", "pac", "recon", "eval_data", "cache",
               "protocol", "inference", "outputs"),
    "infer": ("device", "model", "infer", "inference", "outputs"),
}

# Old option names: ``--file_name`` was export.py's output and infer.py's input.
# Without an entry script (get_config called by a script or a test), it sets both, as it used to.
ALIASES = {
    "export": {"file_name": ("export_file",)},
    "infer": {"file_name": ("model_file",)},
    None: {"file_name": ("export_file", "model_file")},
}
RETIRED = ("file_name",)  # accepted in a config file by every entry script (an older copy of the defaults)


def section_of(key):
    """The section name holding ``key``, or None for a key of no section (a test config's own key)."""
    for name, (_, keys) in SECTIONS.items():
        if key in keys:
            return name
    return None
