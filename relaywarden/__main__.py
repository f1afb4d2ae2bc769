from relaywarden.cli import main

main()
