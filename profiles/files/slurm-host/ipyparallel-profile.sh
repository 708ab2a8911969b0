# Sourced by start-notebook.sh: give the user the site's IPyParallel profile "slurm" (engines
# as Slurm jobs in this same image) unless they already have one.
_ipp_dir="${IPYTHONDIR:-$HOME/.ipython}/profile_slurm"
if [ ! -e "$_ipp_dir/ipcluster_config.py" ] && mkdir -p "$_ipp_dir" 2>/dev/null; then
    cp /opt/imagekit/ipython/profile_slurm/ipcluster_config.py "$_ipp_dir/" 2>/dev/null || true
fi
unset _ipp_dir
