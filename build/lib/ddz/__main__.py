from ddz.cli.main import entrypoint

entrypoint()
