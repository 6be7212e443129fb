from attnexplain.cli import main

main()
