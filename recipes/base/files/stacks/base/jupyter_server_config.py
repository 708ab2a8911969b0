# Installed by imagekit's base stack as /etc/jupyter/jupyter_server_config.py.
c = get_config()  # noqa: F821

c.ServerApp.open_browser = False
# Terminals and kernels start in the user's directory, also under Singularity.
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash", "-l"]}
# Containers are reached through a port mapping or a proxy, never via localhost links.
c.ServerApp.custom_display_url = ""
