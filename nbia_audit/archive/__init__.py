"""The archive as the verbs see it: one Archive protocol, one view over the client, one
request counter, and ``open_archive`` to get an Archive from a URL, a server name or a client."""

from nbia_audit.archive.counting import CountingArchive
from nbia_audit.archive.protocol import Archive
from nbia_audit.archive.resolve import open_archive
from nbia_audit.archive.view import ArchiveView

__all__ = ["Archive", "ArchiveView", "CountingArchive", "open_archive"]
