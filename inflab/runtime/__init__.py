"""The host runtime: where the lab's work runs, chosen once per session.

One seam decides how a payload starts, how an image is built and pushed, how work on the
host is stopped, where the host is and which AWS endpoint answers. Steps receive a
:class:`~inflab.runtime.base.HostRuntime` and never ask whether they run in the sandbox.
Implementations: :mod:`inflab.runtime.aws` (an EC2 instance in a real account) and
:mod:`inflab.runtime.sandbox` (AWS emulated on loopback, this machine as the instance).
The engine picks one (:func:`inflab.runtime.select.for_session`).
"""
