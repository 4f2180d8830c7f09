"python -m xresnet_fa: the xresnet-fa command"
import sys
from xresnet_fa.cli import main

if __name__ == '__main__': sys.exit(main())
