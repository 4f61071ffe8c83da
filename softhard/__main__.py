from softhard.cli import main

raise SystemExit(main())
