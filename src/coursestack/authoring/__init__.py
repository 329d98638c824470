"""Course production tools: draft progress tracking and export to OU-XML.

Everything here is reached through `coursestack author` (see `cli.author_app`) or through
the library functions of the submodules; nothing here imports the rest of coursestack
except `coursestack.errors`.
"""
