"""NFS volumes as data: names, folders, Docker volume options (`volumes`) and NFS-Ganesha's
configuration and command line (`ganesha`); shared by the control plane and the agent."""
