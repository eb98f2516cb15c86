from tiffin.cli import main

main()
