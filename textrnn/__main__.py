from textrnn.cli.main import main

main()
