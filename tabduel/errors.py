"""Errors that tabduel expects and reports in one line, without a traceback."""


class TabduelError(Exception):
    """An expected failure: bad input, bad settings, missing upstream output."""


class ConfigError(TabduelError):
    """A setting is unknown or has the wrong type or value."""


class DataError(TabduelError):
    """The input data is missing, unreadable or invalid."""


class SourceError(TabduelError):
    """The raw source file cannot be found, downloaded or verified."""


class CapacityError(TabduelError):
    """The work asked for would not fit the device's memory."""
