#!/bin/bash
# SLURM alone: seconds from sbatch to the first command of a job, N jobs as alice (docs/slurm.md)
#   sudo benchmarks/slurm_launch.sh 50 [ALL|NONE]   (--export: ALL, as hpcspawner submits)
n=$1; export_mode=${2:-ALL}; out=()
for i in $(seq $n); do
  t=$(date +%s.%N); J=$(sudo -u alice sbatch --parsable -p jupyter --export=$export_mode --output=/home/alice/x-%j.out --chdir=/home/alice --wrap 'date +%s.%N')
  while [ ! -s /home/alice/x-$J.out ]; do sleep 0.01; done; sleep 0.03
  e=$(cat /home/alice/x-$J.out); rm -f /home/alice/x-$J.out
  out+=($(python3 -c "print(round($e-$t,3))"))
  sleep 0.$((RANDOM % 10))
done
python3 -c "import statistics,sys; v=sorted(map(float,sys.argv[1:])); print(f'median {statistics.median(v):.2f} s, max {v[-1]:.2f} s, n={len(v)}')" "${out[@]}"
