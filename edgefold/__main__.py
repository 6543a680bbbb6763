from edgefold.cli.main import main

raise SystemExit(main())
