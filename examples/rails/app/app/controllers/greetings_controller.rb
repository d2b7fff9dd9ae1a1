# Edited by the hot-reload test: the next response shows the change.
class GreetingsController < ApplicationController
  def show
    render plain: "hello"
  end
end
