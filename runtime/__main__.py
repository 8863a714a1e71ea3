from knserve.runtime.server import main

main()
