"""Typed exceptions. Every error a user can cause is one of these, with a message that names
the problem and the fix; the CLI prints the message on one line and exits with code 2."""


class AttnExplainError(Exception):
    """Base class for every error caused by bad input or a bad environment."""


class UnknownNameError(AttnExplainError, KeyError):
    """A dataset, encoder, attention or other registry name that does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DataSourceError(AttnExplainError):
    """A data or weight source could not be fetched, verified or parsed."""


class InvalidInputError(AttnExplainError, ValueError):
    """Input data (texts, labels, tables) that cannot be used as given."""


class CheckpointError(AttnExplainError):
    """A checkpoint that is missing, truncated or does not match its declared architecture."""


class HookError(AttnExplainError):
    """Attention that cannot be captured or intervened on: a model whose attention does not
    pass through a hook point, or a site name the model does not have."""


class PlanError(AttnExplainError):
    """An experiment plan (YAML) that cannot be run: the message names the file, the offending
    field path (``models[1].encoder``) and the fix."""


class ArgumentTypeError(AttnExplainError, TypeError):
    """An argument of the wrong kind: a path where a model is expected, a list of texts where a
    Batch is expected. The message says what to pass instead (``load_checkpoint(...)``,
    ``collate(...)``)."""
