"""Errors raised by mahal, with metric-learn's names (``metric_learn.exceptions``).

Each also subclasses ``ValueError``, so that code written for scikit-learn's
conventions (``except ValueError``) and code written for metric-learn
(``except NonPSDError`` / ``except numpy.linalg.LinAlgError`` /
``except PreprocessorError``) both catch them.
"""

from numpy.linalg import LinAlgError

__all__ = ["NonPSDError", "PreprocessorError"]


class PreprocessorError(ValueError):
    """The ``preprocessor`` failed to turn identifiers into points.

    Parameters
    ----------
    original_error : Exception
        The error the preprocessor raised (also kept as ``__cause__``).
    """

    def __init__(self, original_error):
        self.original_error = original_error
        super().__init__("An error occurred when trying to use the preprocessor: "
                         f"{original_error!r}")


class NonPSDError(LinAlgError, ValueError):
    """A matrix that must be positive semi-definite (PSD) is not.

    Parameters
    ----------
    message : str, optional
        Default: metric-learn's "Matrix is not positive semidefinite (PSD)."
    """

    def __init__(self, message="Matrix is not positive semidefinite (PSD)."):
        super().__init__(message)
