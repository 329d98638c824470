"""Many students on one host: JupyterHub in front of one coursestack instance per student.

- users.py       hub names -> unix accounts (TLJH-style names, collisions kept apart)
- network.py     per-student port blocks and the nftables rules that close them to others
- spawner.py     CoursestackSpawner: one unix user, one instance, one memory cgroup each
- singleuser.py  `coursestack singleuser`: the instance daemon behind the Hub's OAuth
- config.py      the JupyterHub configuration, generated in Python
- cli.py         `coursestack hub up/status/down`
"""
