from coagent_cli.cli import main

main()
