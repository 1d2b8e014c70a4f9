from hades.cli import main

main()
