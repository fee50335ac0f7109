from agentfsm.cli.app import main

main()
