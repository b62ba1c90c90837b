import os
import sys
from pathlib import Path

# Tests import their shared helpers from support/ (this folder is put on sys.path);
# no test module imports another.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# A DDS domain of this test process's own, so that concurrent test runs (and any
# ROS graph on the machine) never see each other's topics.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
