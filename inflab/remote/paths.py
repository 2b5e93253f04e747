"""Where the lab keeps its files on the host, relative to the login user's home."""

PAYLOAD_DIR = ".inflab/payload"  # the payload scripts (inflab/remote/payload), shipped over SFTP
WORK_DIR = ".inflab/work"  # compiled models and results
IMAGE_DIR = ".inflab/image"  # the container build context
