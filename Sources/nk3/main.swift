print("nk3")
