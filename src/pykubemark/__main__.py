from pykubemark.cli import main

main()
