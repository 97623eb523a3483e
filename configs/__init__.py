"""The shipped experiment configs (YAML), installed as the package ``burn_tf.configs``.

This folder at the repository root is the one copy: users edit it in a checkout, and
setup.cfg's ``package_dir`` ships it inside the wheel as ``burn_tf/configs``.
``burn_tf.config.CONFIG_DIR`` finds it either way; ``--config demo`` names a file here.
"""
