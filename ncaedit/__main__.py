from ncaedit.cli import main

main()
