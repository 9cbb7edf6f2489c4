print("nk3-agent")
