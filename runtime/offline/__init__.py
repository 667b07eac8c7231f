"""Offline jobs that make the files a run uses: a world model trained from recordings, its INT8 variant."""
