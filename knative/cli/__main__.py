from knserve.knative.cli import main

main()
