"""What the deployment export raises when it cannot do what was asked."""

#: how messages of the export API and CLI say "replace an existing output"
OVERWRITE_HINT = "--overwrite (overwrite=True)"


class ExportError(ValueError):
    """The requested export cannot be made (wrong stage, missing file, bad option)."""
